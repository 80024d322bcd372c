from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path

import pytest
from gateway_plugins.backends.echo import EchoOptions
from gateway_plugins.backends.openai_chat import OpenAIChatOptions

from gateway.config import (
    GatewayConfig,
    load_config,
    load_redis_settings,
    load_route_names,
    parse_config,
)
from gateway.errors import ConfigError, Problem
from gateway.store.settings import EMBEDDED, RedisSettings
from gateway.store.store import connection_options

VALID = """\
listen:
  host: 0.0.0.0
  port: 9000
redis:
  url: redis://cache:6379/1
  socket_timeout: 0.5
auth:
  cache_ttl: 0.25
limits:
  max_body_bytes: 1024
backends:
  local: {type: echo, chunk_delay: 0.01}
  upstream:
    type: openai_chat
    base_url: http://vllm:8000/v1
    api_key_env: TEST_UPSTREAM_KEY
routes:
  echo:
    backend: local
  gpt:
    backend: upstream
    model: gpt-4o-mini
    max_output_tokens: 256
    pricing: {input: 0.15, output: 0.6, cached_input: 0.075}
"""


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-upstream")
    monkeypatch.delenv("TEST_MISSING_KEY", raising=False)


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml")
    found = list(info.value.problems)
    assert found, "a ConfigError must carry at least one problem"
    return found


def only(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_valid_config() -> None:
    config = parse_config(VALID, "gw.yaml")
    assert config.source == "gw.yaml"
    assert (config.listen.host, config.listen.port) == ("0.0.0.0", 9000)
    assert config.redis == RedisSettings(url="redis://cache:6379/1", socket_timeout=0.5)
    assert config.auth.cache_ttl == 0.25
    assert config.limits.max_body_bytes == 1024
    local = config.backends["local"]
    assert (local.name, local.type, local.options) == ("local", "echo", EchoOptions(0.01))
    upstream = config.backends["upstream"]
    assert upstream.options == OpenAIChatOptions(
        base_url="http://vllm:8000/v1", api_key_env="TEST_UPSTREAM_KEY"
    )
    gpt = config.routes["gpt"]
    assert (gpt.backend, gpt.model, gpt.max_output_tokens) == ("upstream", "gpt-4o-mini", 256)
    assert config.routes["echo"].pricing.free
    assert not gpt.pricing.free


def test_prices_are_exact_decimals() -> None:
    pricing = parse_config(VALID).routes["gpt"].pricing
    assert pricing.input == Decimal("0.15")
    assert isinstance(pricing.input, Decimal)
    assert pricing.output == Decimal("0.6")
    assert pricing.cached_input == Decimal("0.075")
    assert pricing.cache_write is None
    # 0.15 as a binary float is not exactly 0.15: the exact decimal must survive.
    assert pricing.input * 3 == Decimal("0.45")


def test_prices_as_strings_and_integers() -> None:
    text = (
        "backends: {e: {type: echo}}\n"
        "routes:\n"
        "  a: {backend: e, pricing: {input: '0.1', output: 2}}\n"
    )
    pricing = parse_config(text).routes["a"].pricing
    assert (pricing.input, pricing.output) == (Decimal("0.1"), Decimal(2))


def test_empty_file_is_all_defaults() -> None:
    config = parse_config("")
    assert dataclasses.replace(config, filters=()) == GatewayConfig(source="<string>")
    assert config.redis.url == EMBEDDED
    assert config.access_log is True
    assert [f.type for f in config.filters] == ["request_log"]  # the access log


def test_the_access_log_is_on_unless_turned_off() -> None:
    assert parse_config("access_log: false\n").filters == ()
    config = parse_config("filters: [{type: request_log, level: debug}]\n")
    [spec] = config.filters  # an explicit entry replaces the default, never doubles it
    assert spec.type == "request_log" and spec.options.level == "debug"
    config = parse_config("access_log: false\nfilters: [{type: request_log}]\n")
    assert [f.type for f in config.filters] == ["request_log"]  # asked for explicitly
    assert only("access_log: yes please\n").path == "access_log"


def test_unknown_top_level_key() -> None:
    problem = only("listen: {port: 1}\nbogus: 1\n")
    assert (problem.path, problem.line, problem.file) == ("bogus", 2, "gw.yaml")
    assert "unknown key" in problem.message
    assert str(problem).startswith("gw.yaml:2: bogus: unknown key")


def test_unknown_key_in_a_route() -> None:
    text = "backends:\n  e: {type: echo}\nroutes:\n  a:\n    backend: e\n    modle: x\n"
    problem = only(text)
    assert (problem.path, problem.line) == ("routes.a.modle", 6)
    assert "unknown key" in problem.message and "model" in problem.message


def test_a2a_card_settings_and_one_well_known_agent() -> None:
    text = (
        "backends:\n  e: {type: echo}\nroutes:\n"
        "  a:\n    backend: e\n    a2a: {description: Hi, well_known: true,"
        " skills: [{id: s, name: S, tags: [t]}]}\n"
        "  b:\n    backend: e\n    a2a: {well_known: true}\n"
    )
    problem = only(text)
    assert problem.path == "routes.b.a2a.well_known" and "'a'" in problem.message
    config = parse_config(text.replace("a2a: {well_known: true}", "model: m"), "gw.yaml")
    a2a = config.routes["a"].a2a
    assert (a2a.description, a2a.well_known, a2a.skills[0].tags) == ("Hi", True, ("t",))
    assert config.routes["b"].a2a.input_modes == ("text/plain",)


def test_wrong_type() -> None:
    problem = only('listen:\n  host: h\n  port: "x"\n')
    assert (problem.path, problem.line) == ("listen.port", 3)
    assert problem.message == "expected an integer, got a string"


def test_boolean_is_not_an_integer() -> None:
    problem = only("limits:\n  max_body_bytes: true\n")
    assert (problem.path, problem.line) == ("limits.max_body_bytes", 2)


def test_check_out_of_range() -> None:
    problem = only("listen:\n  port: 70000\n")
    assert (problem.path, problem.line) == ("listen.port", 2)
    assert "65535" in problem.message


def test_reasoning_events_default_top_level_and_per_route() -> None:
    assert parse_config("").responses.reasoning_events == "summary"
    config = parse_config(
        "responses: {reasoning_events: spec}\n"
        "backends: {e: {type: echo}}\n"
        "routes:\n"
        "  a: {backend: e}\n"
        "  b: {backend: e, responses: {reasoning_events: openai}}\n"
    )
    assert config.responses.reasoning_events == "spec"
    assert config.routes["a"].responses.reasoning_events is None  # takes the top level
    assert config.routes["b"].responses.reasoning_events == "openai"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("responses: {reasoning_events: raw}\n", "responses.reasoning_events"),
        (
            "backends: {e: {type: echo}}\n"
            "routes: {a: {backend: e, responses: {reasoning_events: both}}}\n",
            "routes.a.responses.reasoning_events",
        ),
    ],
)
def test_reasoning_events_must_be_known(text: str, path: str) -> None:
    problem = only(text)
    assert problem.path == path
    assert "summary, spec, openai" in problem.message


def test_storage_policy_defaults_and_per_route() -> None:
    config = parse_config("")
    assert config.responses.store == "allowed" and config.responses.encryption is None
    config = parse_config(
        "responses: {retention_seconds: 3600}\n"
        "backends: {e: {type: echo}}\n"
        "routes:\n"
        "  a: {backend: e, store: never}\n"
        "  b: {backend: e, retention_seconds: 60}\n"
    )
    assert config.routes["a"].store == "never" and config.routes["b"].retention_seconds == 60


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("responses: {store: sometimes}\n", "responses.store", "allowed, never"),
        (
            "routes: {a: {backend: e, store: always}}\n",
            "routes.a.store",
            "must be one of allowed, never",
        ),
        (
            "responses: {store: never}\nroutes: {a: {backend: e, store: allowed}}\n",
            "routes.a.store",
            "cannot be 'allowed' while responses.store is 'never'",
        ),
        (
            "responses: {retention_seconds: 60}\n"
            "routes: {a: {backend: e, retention_seconds: 61}}\n",
            "routes.a.retention_seconds",
            "must not exceed responses.retention_seconds (60): a route can only shorten",
        ),
        (
            "routes: {a: {backend: e, retention_seconds: 0}}\n",
            "routes.a.retention_seconds",
            "greater than 0",
        ),
    ],
)
def test_storage_policy_problems(text: str, path: str, message: str) -> None:
    problem = only("backends: {e: {type: echo}}\n" + text)
    assert problem.path == path and message in problem.message


def test_webhook_take_over_must_outlast_a_try(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event is taken over after claim_after: no sooner than its try could end."""
    monkeypatch.setenv("GW_HOOK", "s3cret")
    hook = "alerts: {webhook: {url: 'http://127.0.0.1:9/h', secret_env: GW_HOOK, %s}}\n"
    problem = only("backends: {e: {type: echo}}\n" + hook % "timeout: 5, claim_after: 5")
    assert problem.path == "alerts.webhook.claim_after"
    assert "must be longer than alerts.webhook.timeout (5 s)" in problem.message
    config = parse_config(
        "backends: {e: {type: echo}}\nroutes: {a: {backend: e}}\n"
        + hook % "timeout: 5, claim_after: 6",
        "gw.yaml",
    )
    assert config.alerts.webhook is not None and config.alerts.webhook.claim_after == 6


def test_encryption_keys_are_checked_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing or malformed key stops the start; the key itself is never quoted."""
    text = "responses: {encryption: {key_env: GW_KEY, previous_key_envs: [GW_OLD]}}\n"
    monkeypatch.delenv("GW_KEY", raising=False)
    problem = only(text)
    assert problem.path == "responses.encryption.key_env"
    assert problem.message == "environment variable GW_KEY is not set"
    monkeypatch.setenv("GW_KEY", "dGhpcyBpcyBub3QgMzIgYnl0ZXM=")
    monkeypatch.setenv("GW_OLD", "A" * 43 + "=")
    problem = only(text)
    assert problem.path == "responses.encryption.key_env"
    assert "decodes to 20 bytes; an AES-256 key is 32" in problem.message
    assert "dGhpcyBp" not in str(problem)
    monkeypatch.setenv("GW_KEY", "A" * 43 + "=")
    monkeypatch.setenv("GW_OLD", "")
    assert only(text).path == "responses.encryption.previous_key_envs[0]"
    monkeypatch.setenv("GW_OLD", "B" * 43 + "=")
    encryption = parse_config(text).responses.encryption
    assert encryption is not None and encryption.previous_key_envs == ("GW_OLD",)


@pytest.mark.parametrize("price", ["-0.5", "1000000.01"])
def test_a_price_out_of_range(price: str) -> None:
    text = (
        "backends: {e: {type: echo}}\n"
        "routes:\n"
        "  a:\n"
        "    backend: e\n"
        "    pricing:\n"
        "      input: 1\n"
        f"      output: {price}\n"
    )
    problem = only(text)
    assert (problem.path, problem.line) == ("routes.a.pricing.output", 7)
    assert problem.message == "must be between 0 and 1,000,000"


@pytest.mark.parametrize(
    ("line", "path"),
    [
        ("    max_output_tokens: 1000000000001", "routes.a.max_output_tokens"),
        ("    limits: {rpm: 1000000000000001}", "routes.a.limits.rpm"),
    ],
)
def test_a_route_bound_beyond_the_amounts_range(line: str, path: str) -> None:
    problem = only(f"backends: {{e: {{type: echo}}}}\nroutes:\n  a:\n    backend: e\n{line}\n")
    assert problem.path == path and "must be between" in problem.message


def test_every_problem_is_reported_not_only_the_first() -> None:
    text = (
        "backends: {e: {type: echo}}\n"
        "routes:\n"
        "  a:\n"
        "    backend: e\n"
        "    pricing:\n"
        "      typo: 1\n"
        "      input: -1\n"
        "      output: -2\n"
    )
    found = {(p.path, p.line) for p in problems(text)}
    assert found == {
        ("routes.a.pricing.typo", 6),
        ("routes.a.pricing.input", 7),
        ("routes.a.pricing.output", 8),
    }


def test_route_naming_a_missing_backend() -> None:
    text = "backends:\n  e: {type: echo}\nroutes:\n  a:\n    backend: nothere\n"
    problem = only(text)
    assert (problem.path, problem.line) == ("routes.a.backend", 5)
    assert "'nothere'" in problem.message


def test_route_to_a_broken_backend_reports_the_backend_only() -> None:
    text = "backends:\n  e: {type: echo, chunk_delay: fast}\nroutes:\n  a: {backend: e}\n"
    problem = only(text)
    assert (problem.path, problem.line) == ("backends.e.chunk_delay", 2)


def test_a_route_needs_a_backend_or_backends() -> None:
    problem = only("routes:\n  a:\n    model: m\n")
    assert (problem.path, problem.line) == ("routes.a", 2)
    assert "'backend'" in problem.message and "'backends'" in problem.message
    both = "backends:\n  e: {type: echo}\nroutes:\n  a: {backend: e, backends: [{backend: e}]}\n"
    assert only(both).path == "routes.a"


def test_backends_list_with_weights_and_models() -> None:
    config = parse_config(
        "backends:\n  e: {type: echo}\n  f: {type: echo}\n"
        "routes:\n  a:\n    model: m\n    backends:\n"
        "      - {backend: e, weight: 3}\n      - {backend: f, model: other}\n"
    )
    targets = config.routes["a"].targets
    assert [(t.backend, t.model, t.weight) for t in targets] == [
        ("e", None, 3),
        ("f", "other", None),
    ]


def test_a_missing_backend_in_the_list_is_located() -> None:
    text = (
        "backends:\n  e: {type: echo}\nroutes:\n  a:\n    backends:\n"
        "      - {backend: e}\n      - {backend: x}\n"
    )
    problem = only(text)
    assert (problem.path, problem.line) == ("routes.a.backends[1].backend", 7)


def test_gateway_settings_of_a_backend_are_not_plugin_options() -> None:
    config = parse_config(
        "backends:\n  e:\n    type: echo\n    timeouts: {first_byte: 2, idle: 3, total: 9}\n"
        "    circuit_breaker: {failures: 2, cooldown: 1.5}\n"
    )
    spec = config.backends["e"]
    assert (spec.timeouts.first_byte, spec.timeouts.idle, spec.timeouts.total) == (2, 3, 9)
    assert (spec.breaker.failures, spec.breaker.cooldown) == (2, 1.5)
    assert only("backends:\n  e:\n    type: echo\n    timeouts: {idle: 0}\n").path == (
        "backends.e.timeouts.idle"
    )


def test_unknown_backend_type_names_it() -> None:
    problem = only("backends:\n  b:\n    type: nope\n")
    assert (problem.path, problem.line) == ("backends.b.type", 3)
    assert "'nope'" in problem.message
    assert "echo" in problem.message and "openai_chat" in problem.message


def test_backend_without_type() -> None:
    problem = only("backends:\n  b: {chunk_delay: 1}\n")
    assert problem.path == "backends.b.type"
    assert problem.line == 2  # the nearest located ancestor: backends.b


def test_backend_options_are_checked_like_settings() -> None:
    problem = only(
        "backends:\n  b:\n    type: openai_chat\n    base_url: http://x\n    timeout: 0\n"
    )
    assert (problem.path, problem.line) == ("backends.b.timeout", 5)
    required = only("backends:\n  b:\n    type: openai_chat\n")
    assert (required.path, required.message) == ("backends.b.base_url", "required")


def test_missing_env_var_for_api_key() -> None:
    text = (
        "backends:\n"
        "  up:\n"
        "    type: openai_chat\n"
        "    base_url: http://x/v1\n"
        "    api_key_env: TEST_MISSING_KEY\n"
    )
    problem = only(text)
    assert (problem.path, problem.line) == ("backends.up.api_key_env", 5)
    assert "TEST_MISSING_KEY" in problem.message


def test_env_var_present_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_MISSING_KEY", "x")
    text = (
        "backends:\n"
        "  up: {type: openai_chat, base_url: 'http://x', api_key_env: TEST_MISSING_KEY}\n"
    )
    assert parse_config(text).backends["up"].options.api_key_env == "TEST_MISSING_KEY"


def test_duplicate_key() -> None:
    text = "listen:\n  port: 1\n  port: 2\n"
    problem = only(text)
    assert (problem.path, problem.line, problem.message) == ("listen.port", 3, "duplicate key")


def test_invalid_yaml() -> None:
    problem = only("listen:\n  port: 1\n bad: [\n")
    assert problem.path == ""
    assert problem.message.startswith("invalid YAML")
    assert problem.line == 3


def test_invalid_yaml_names_the_file_not_the_stream() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("listen:\n  port: 1\n bad: [\n", "g.yaml")
    (problem,) = caught.value.problems
    assert str(problem) == (
        "g.yaml:3: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(column 2), while parsing a block mapping that starts at line 1"
    )
    assert "<unicode string>" not in str(problem)


def test_file_must_be_a_mapping() -> None:
    problem = only("\n- a\n- b\n")
    assert problem.message == "the file must be a mapping of settings"
    assert problem.line == 2


def test_a_problem_without_a_key_path_has_the_same_shape() -> None:
    assert str(Problem("", "invalid YAML: x", "g.yaml", 3)) == "g.yaml:3: invalid YAML: x"
    assert str(Problem("", "cannot read: gone", "g.yaml")) == "g.yaml: cannot read: gone"
    assert str(Problem("a.b", "bad", "g.yaml", 2)) == "g.yaml:2: a.b: bad"


@pytest.mark.parametrize(
    ("text", "line"),
    [("", 1), ("# nothing yet\n", 1), ("listen: {port: 1}\nroutes:\n", 2), ("routes: {}\n", 1)],
)
def test_a_file_to_serve_needs_a_route(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.path) == (str(path), line, "routes")
    assert problem.message.startswith("no routes")
    assert parse_config(text).routes == {}  # a fragment checked on its own may have none


def test_no_routes_is_not_said_over_broken_ones(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("routes:\n  a: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.path for p in caught.value.problems] == ["routes.a"]


def test_a_redis_url_with_a_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    problem = only("redis: {url: 'redis://h:port/0'}\n")
    assert (problem.path, problem.line) == ("redis.url", 1)
    assert "port" in problem.message


def test_routes_must_be_a_mapping() -> None:
    problem = only("routes: [a]\n")
    assert (problem.path, problem.line) == ("routes", 1)


def test_env_overrides_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://override:1/2")
    config = parse_config(VALID)
    assert config.redis.url == "redis://override:1/2"
    assert config.redis.socket_timeout == 0.5  # the rest of the section stays


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("listen: {port: x}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].file == str(path)
    assert info.value.problems[0].line == 1


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot read" in info.value.problems[0].message


def test_load_redis_settings_ignores_backend_secrets(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "redis: {url: 'redis://r:6379/0', connect_timeout: 3}\n"
        "backends:\n  up: {type: openai_chat, base_url: x, api_key_env: TEST_MISSING_KEY}\n"
    )
    settings = load_redis_settings(path)
    assert settings == RedisSettings(url="redis://r:6379/0", connect_timeout=3.0)


def test_load_redis_settings_defaults_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("listen: {port: 1}\n")
    assert load_redis_settings(path) == RedisSettings()
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://env:1/0")
    assert load_redis_settings(path).url == "redis://env:1/0"


def test_load_redis_settings_checks_the_section(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("redis: {socket_timeout: -1, bogus: 1}\n")
    with pytest.raises(ConfigError) as info:
        load_redis_settings(path)
    assert {p.path for p in info.value.problems} == {"redis.socket_timeout", "redis.bogus"}


def test_load_redis_settings_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("redis: [\n")
    with pytest.raises(ConfigError) as caught:
        load_redis_settings(path)
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"{path}:2: invalid YAML: ")  # as `config check` says it


def test_load_route_names_needs_no_backend_secrets(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "backends:\n  up: {type: openai_chat, base_url: x, api_key_env: TEST_MISSING_KEY}\n"
        "routes:\n  a: {backend: up}\n  b: {backend: up}\n"
    )
    assert load_route_names(path) == {"a", "b"}
    path.write_text("")
    assert load_route_names(path) == frozenset()


# The redis section: topology, credentials, TLS, admission


def test_redis_defaults_fail_closed_with_a_stale_window() -> None:
    config = parse_config("")
    assert config.redis.admission == "fail_closed" and config.redis.sentinel is None
    assert config.auth.stale_for == 60 and config.metering.outbox_size == 100_000


def test_redis_sentinel_tls_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_PW", "s3cret")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = parse_config(
        f"""
redis:
  url: rediss://gateway@mymaster/2
  password_env: REDIS_PW
  tls: {{ca_file: {ca}, verify: false}}
  sentinel: {{master: mymaster, nodes: ["10.0.0.1:26379", "s2:26380"]}}
  admission: fail_open
"""
    )
    redis = config.redis
    assert redis.sentinel is not None and redis.sentinel.nodes == ("10.0.0.1:26379", "s2:26380")
    assert redis.uses_tls and redis.tls.ca_file == str(ca) and not redis.tls.verify
    assert redis.admission == "fail_open"
    options = connection_options(redis)
    assert options["password"] == "s3cret" and options["ssl_cert_reqs"] == "none"
    assert options["socket_timeout"] == 2.0 and options["socket_connect_timeout"] == 2.0


@pytest.mark.parametrize(
    ("section", "where", "message"),
    [
        ("{admission: sometimes}", "redis.admission", "fail_closed, fail_open"),
        ("{url: http://x}", "redis.url", "redis://"),
        ("{url: 'redis://:pw@h', password_env: HOME}", "redis.password_env", "one place"),
        ("{url: redis://h, password_env: NO_SUCH_VAR_X}", "redis.password_env", "not set"),
        ("{url: redis://h, tls: {ca_file: /no/such.pem}}", "redis.tls.ca_file", "no such file"),
        ("{url: redis://h, tls: {verify: false}}", "redis.tls", "rediss://"),
        ("{url: rediss://h, tls: {cert_file: /etc/hostname}}", "redis.tls", "go together"),
        ("{url: redis://h, cluster: true, sentinel: {master: m, nodes: ['h:1']}}",
         "redis.sentinel", "exclude"),
        ("{url: redis://h, sentinel: {master: m, nodes: [nohost]}}",
         "redis.sentinel.nodes[0]", "host:port"),
        ("{url: redis://h, sentinel: {nodes: ['h:1']}}", "redis.sentinel.master", "required"),
        ("{sentinel: {master: m, nodes: ['h:1']}}", "redis.url", "required"),
    ],
)  # fmt: skip
def test_redis_section_problems(
    section: str, where: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    found = problems(f"redis: {section}\n")
    assert any(p.path == where and message in p.message for p in found), found
