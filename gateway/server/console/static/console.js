// The gateway console's only script: actions sent as JSON with the CSRF token after a
// confirmation, and the Live page's polling. Every value from the server is set as
// text (textContent), never as markup.
'use strict';

(function () {
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }

  // A form's inputs as a JSON body: data-type int (a number), list (comma-separated),
  // days (to seconds); "a.b" names nest; empty inputs are left out.
  function collect(form) {
    const body = {};
    for (const el of form.querySelectorAll('input, select, textarea')) {
      if (!el.name || el.type === 'hidden') continue;
      const raw = el.value.trim();
      if (raw === '') continue;
      let value = raw;
      const type = el.dataset.type;
      if (type === 'int') value = Number(raw);
      else if (type === 'list') value = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else if (type === 'days') value = Number(raw) * 86400;
      const path = el.name.split('.');
      let target = body;
      while (path.length > 1) {
        const name = path.shift();
        target[name] = target[name] || {};
        target = target[name];
      }
      target[path[0]] = value;
    }
    return body;
  }

  function say(out, text, kind) {
    out.className = 'result ' + kind;
    out.textContent = text;
  }

  function showSecret(out, data) {
    out.className = 'result ok';
    out.textContent = '';
    const intro = document.createElement('p');
    intro.textContent = 'The secret of ' + data.name + ', shown only now (copy it):';
    const secret = document.createElement('code');
    secret.className = 'secret';
    secret.textContent = data.key;
    const link = document.createElement('a');
    link.href = '/console/keys/' + encodeURIComponent(data.id);
    link.textContent = 'Open the key ' + data.id;
    out.append(intro, secret, link);
    for (const warning of data.warnings || []) {
      const p = document.createElement('p');
      p.textContent = warning;
      out.append(p);
    }
  }

  async function act(form) {
    const out = form.querySelector('output');
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    let response;
    let data = {};
    try {
      response = await fetch(form.dataset.url, {
        method: form.dataset.method,
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() },
        body: JSON.stringify(collect(form)),
      });
      data = await response.json();
    } catch (error) {
      say(out, 'The request failed: ' + error, 'error');
      return;
    }
    if (!response.ok) {
      say(out, (data.error && data.error.message) || 'Refused: ' + response.status, 'error');
      return;
    }
    if (form.dataset.then === 'secret') showSecret(out, data);
    else window.location.reload();
  }

  document.addEventListener('submit', (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.classList.contains('action')) {
      event.preventDefault();
      act(form);
    }
  });

  function cell(name, value) {
    const td = document.createElement('td');
    if (value === null || value === undefined) value = '';
    else if (name === 'at') value = new Date(value * 1000).toISOString().slice(11, 19);
    td.textContent = String(value);
    return td;
  }

  function fill(table, rows) {
    const columns = Array.from(table.querySelectorAll('thead th'), (th) => th.textContent);
    const body = table.querySelector('tbody');
    body.replaceChildren(
      ...rows.map((row) => {
        const tr = document.createElement('tr');
        tr.append(...columns.map((name) => cell(name, row[name])));
        return tr;
      }),
    );
  }

  async function poll() {
    const status = document.getElementById('live-status');
    try {
      const response = await fetch('/console/api/live', { credentials: 'same-origin' });
      if (response.status === 401) {
        window.location.href = '/console/login';
        return;
      }
      const data = await response.json();
      fill(document.getElementById('in-flight'), data.in_flight);
      fill(document.getElementById('recent'), data.recent);
      status.textContent = 'Updated ' + new Date(data.at * 1000).toISOString().slice(11, 19) +
        ' UTC; refreshes every 2 seconds.';
    } catch (error) {
      status.textContent = 'Could not refresh: ' + error;
    }
  }

  if (document.getElementById('recent')) {
    poll();
    window.setInterval(poll, 2000);
  }
})();
