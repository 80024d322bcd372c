"""``docs/clients.md``, written from the matrix's cases (``cases.py``) and the locks.

``python -m tests.matrix.table`` rewrites the file; ``test_table.py`` fails when it
differs from what this renders. Since every case the table calls failing is a strict
xfail and every other case must pass, a green matrix means the table is true.
"""

from __future__ import annotations

import sys

from tests.matrix.cases import (
    CLIENTS,
    NOT_APPLICABLE,
    OPERATIONS,
    ROOT,
    UPSTREAMS,
    WORKS_WITH,
    cases,
    versions,
)

DOC = ROOT / "docs" / "clients.md"

INTRO = """\
# Client libraries

<!-- Written by `python -m tests.matrix.table` from tests/matrix/cases.py: edit those, not this. -->

Which client libraries work against the gateway, operation by operation, as the
client matrix (`tests/matrix/`) finds them: each library is driven the way its own
documentation shows, against a real `gateway serve`, and what it reports is checked
(the text, the tool calls, the reasoning, the token counts, the error's class and
status). `make test` runs the cells over the `echo` backend; `make test-matrix` runs
them all, also over the [LiteLLM proxy](https://github.com/BerriAI/litellm) as an
`openai_chat` upstream (its built-in mock answers, and a relay to the gateway's `echo`
routes for tools and reasoning; installing it takes a minute or two, so it stays out
of `make test`). A cell that fails is an expected failure of the suite: when the fix
lands the suite turns red until the cell is moved to "works".

Operations: **text** and **streamed text** (one user message, the answer's text);
**tool loop** (one declared function tool, called by the model, run by the client,
its result sent back, the final answer); **reasoning** and **streamed reasoning**
(on a route whose backend reasons: the reasoning text as the client exposes it);
**usage** and **streamed usage** (input, output and total tokens as the client reports
them); **bad key → 401** and **unknown model → 404** (the SDK's own error class and
status); **upstream 429** (the upstream refuses: the client's rate-limit error).
"""


def _versions_section() -> str:
    found = versions()
    rows = [
        ("Python", "openai", found["openai"]),
        ("Python", "openai-agents", found["openai-agents"]),
        ("Python", "anthropic", found["anthropic"]),
        ("Python", "langchain-openai", found["langchain-openai"]),
        ("Node", "openai", found["node:openai"]),
        ("Node", "ai", found["node:ai"]),
        ("Node", "@ai-sdk/openai", found["node:@ai-sdk/openai"]),
        ("Node", "@ai-sdk/anthropic", found["node:@ai-sdk/anthropic"]),
        ("upstream", "litellm[proxy]", found["litellm"]),
    ]
    lines = [
        "## Versions tested",
        "",
        "Pinned by `requirements/test.txt` (Python), `tests/matrix/node/package-lock.json`",
        "(run with Debian's Node.js; the newest `openai` 7 and `ai` 7 need Node 22) and",
        "`requirements/litellm.txt`.",
        "",
        "| | package | version |",
        "|---|---|---|",
    ]
    lines += [f"| {lang} | `{name}` | {version} |" for lang, name, version in rows]
    return "\n".join(lines) + "\n"


def _table(upstream: str, notes: dict[str, int]) -> str:
    title, models = UPSTREAMS[upstream]
    ops = [op for op in OPERATIONS if op in models]
    by_cell = {(c.client.id, c.op): c for c in cases(upstream=upstream)}

    def note(reason: str) -> str:
        number = notes.setdefault(reason, len(notes) + 1)
        return f"[{number}](#note-{number})"

    lines = [
        f"## Over {title}",
        "",
        "| client | " + " | ".join(OPERATIONS[op] for op in ops) + " |",
        "|---|" + "---|" * len(ops),
    ]
    for client in CLIENTS:
        cells = []
        for op in ops:
            case = by_cell.get((client.id, op))
            if case is None:
                cells.append(f"n/a {note(NOT_APPLICABLE[(client.id, op)])}")
            elif case.known_failure:
                cells.append(f"**fails** {note(case.known_failure)}")
            elif (client.id, op) in WORKS_WITH:
                cells.append(f"works {note(WORKS_WITH[(client.id, op)])}")
            else:
                cells.append("works")
        language = "Python" if client.language == "python" else "Node"
        lines.append(f"| {language}: {client.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render() -> str:
    notes: dict[str, int] = {}
    tables = [_table(upstream, notes) for upstream in UPSTREAMS]
    note_lines = ["## Notes", ""]
    for reason, number in notes.items():
        note_lines.append(f'<a id="note-{number}"></a>{number}. {reason}')
        note_lines.append("")
    sections = [INTRO, _versions_section(), *tables, "\n".join(note_lines).rstrip() + "\n"]
    return "\n".join(sections)


def main() -> None:
    DOC.write_text(render())
    print(f"wrote {DOC.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
