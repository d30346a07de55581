// validate.mjs — checks docs/openapi.yaml against the OpenAPI 3.0 schema
// (@apidevtools/swagger-parser), then every response the HTTP suites recorded
// (tests/harness: BOXOFFICE_TEST_OPENAPI_LOG, one JSON line per request) against
// the operation it answered: the status must be documented, the content type one
// of the documented media types, the body valid against the schema (ajv), the
// documented headers valid, X-Request-Id present, no body where none is
// documented. The rules of every path (unknown path → 404 ROUTE_NOT_FOUND, other
// method → 405 METHOD_NOT_ALLOWED with Allow, HEAD = GET without a body) are
// checked too. Paths outside the API (the web page) are not in the spec.
//   node validate.mjs SPEC RECORDS.jsonl
// Last line: "openapi: N passed, M failed" (N = the spec + responses that
// conform, M = those that do not).
import { readFileSync } from 'node:fs';
import SwaggerParser from '@apidevtools/swagger-parser';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const [specPath, recordsPath] = process.argv.slice(2);
if (!specPath || !recordsPath) {
  console.error('usage: node validate.mjs docs/openapi.yaml responses.jsonl');
  console.log('openapi: 0 passed, 1 failed');
  process.exit(2);
}

let passed = 0;
let failed = 0;
const problems = new Map(); // "METHOD template status: what" → { count, example }
function fail(key, example) {
  failed += 1;
  const p = problems.get(key) || { count: 0, example };
  p.count += 1;
  problems.set(key, p);
}

// OpenAPI 3.0 schema objects → JSON Schema: `nullable` becomes a null type.
function toJsonSchema(s) {
  if (Array.isArray(s)) return s.map(toJsonSchema);
  if (s === null || typeof s !== 'object') return s;
  const out = {};
  for (const [k, v] of Object.entries(s)) {
    if (k === 'nullable' || k === 'example' || k === 'xml' || k === 'externalDocs') continue;
    out[k] = ['properties', 'patternProperties'].includes(k)
      ? Object.fromEntries(Object.entries(v).map(([n, p]) => [n, toJsonSchema(p)]))
      : toJsonSchema(v);
  }
  if (s.nullable === true) {
    if (typeof out.type === 'string') out.type = [out.type, 'null'];
    if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
    if (out.type === undefined) return { anyOf: [out, { type: 'null' }] };
  }
  return out;
}

let api;
try {
  await SwaggerParser.validate(specPath); // the document itself, against the OpenAPI 3.0 schema
  api = await SwaggerParser.dereference(specPath);
  passed += 1;
  console.log(`ok   ${specPath} is a valid OpenAPI ${api.openapi} document`);
} catch (e) {
  console.log(`FAIL ${specPath}: ${e.message}`);
  console.log('openapi: 0 passed, 1 failed');
  process.exit(1);
}

const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('int32', { type: 'number', validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isInteger(n) });
const compiled = new WeakMap();
function validator(schema) {
  if (!compiled.has(schema)) compiled.set(schema, ajv.compile(toJsonSchema(schema)));
  return compiled.get(schema);
}

// Path templates, most literal first ("/concerts/{id}/queue/tokens" before any
// template that would also match with more parameters).
const templates = Object.keys(api.paths).map((t) => {
  const parts = t.split('/');
  return { t, parts, params: parts.filter((p) => p.startsWith('{')).length };
}).sort((a, b) => a.params - b.params);
function findPath(path) {
  const parts = path.split('/');
  for (const tpl of templates) {
    if (tpl.parts.length !== parts.length) continue;
    if (tpl.parts.every((p, i) => p.startsWith('{') ? parts[i] !== '' : p === parts[i])) return tpl.t;
  }
  return null;
}
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];
const errorSchema = api.components.schemas.Error;

function isApiPath(p) {
  return p.startsWith('/api/') || p === '/api' || ['/healthz', '/readyz', '/metrics'].includes(p);
}

function checkBody(where, rec, content, example) {
  const body = rec.body ?? '';
  if (!content) {
    if (body.length !== 0) fail(`${where}: a body where none is documented`, example);
    return body.length === 0;
  }
  if (rec.method === 'HEAD') {
    if (body.length !== 0) { fail(`${where}: HEAD answered with a body`, example); return false; }
    return true;
  }
  const ctype = (rec.contentType || '').split(';')[0].trim().toLowerCase();
  const media = content[ctype];
  if (!media) {
    fail(`${where}: content type "${ctype}" not documented (${Object.keys(content).join(', ')})`, example);
    return false;
  }
  if (!media.schema) return true;
  let value = body;
  if (ctype === 'application/json' || ctype.endsWith('+json')) {
    try { value = JSON.parse(body); } catch { fail(`${where}: body is not JSON`, example); return false; }
  }
  const v = validator(media.schema);
  if (!v(value)) {
    const why = v.errors.slice(0, 3).map((e) => `${e.instancePath || '(body)'} ${e.message}` +
      (e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues).slice(0, 80)}` : '')).join('; ');
    fail(`${where}: body does not match the schema: ${why}`, example);
    return false;
  }
  return true;
}

function checkHeaders(where, rec, headers, example) {
  let ok = true;
  for (const [name, h] of Object.entries(headers || {})) {
    const got = Object.entries(rec.headers || {}).find(([k]) => k.toLowerCase() === name.toLowerCase());
    if (!got) {
      if (h.required) { fail(`${where}: required header ${name} missing`, example); ok = false; }
      continue;
    }
    if (!h.schema) continue;
    let value = got[1];
    if (['integer', 'number'].includes(h.schema.type) && /^-?\d+(\.\d+)?$/.test(value)) value = Number(value);
    const v = validator(h.schema);
    if (!v(value)) { fail(`${where}: header ${name}: "${got[1]}" ${v.errors[0].message}`, example); ok = false; }
  }
  return ok;
}

// The document's own examples must fit their schemas.
for (const [tpl, item] of Object.entries(api.paths)) {
  for (const m of METHODS) {
    const op = item[m];
    if (!op) continue;
    for (const [status, resp] of Object.entries(op.responses)) {
      for (const [ctype, media] of Object.entries(resp.content || {})) {
        if (media.example === undefined || !media.schema) continue;
        const v = validator(media.schema);
        if (v(media.example)) passed += 1;
        else fail(`example of ${m.toUpperCase()} ${tpl} ${status} (${ctype}) does not match its schema: ` +
          v.errors.slice(0, 2).map((e) => `${e.instancePath} ${e.message}`).join('; '), JSON.stringify(media.example));
      }
    }
  }
}

// A parameter's raw text against its schema: integers as int64 (or int32) text
// within their bounds, anything else through ajv.
function paramValid(schema, text) {
  if (!schema) return true;
  if (schema.type === 'integer') {
    if (!/^-?[0-9]+$/.test(text)) return false;
    const v = BigInt(text);
    const bits = schema.format === 'int32' ? 31n : 63n;
    if (v < -(2n ** bits) || v >= 2n ** bits) return false;
    if (schema.minimum !== undefined && v < BigInt(schema.minimum)) return false;
    if (schema.maximum !== undefined && v > BigInt(schema.maximum)) return false;
    return true;
  }
  return validator(schema)(text);
}

// The parameters of the request that break their schema (name=value), if any.
function badParams(tpl, op, path, query) {
  const params = [...(api.paths[tpl].parameters || []), ...(op.parameters || [])];
  const bad = [];
  const tparts = tpl.split('/');
  const parts = path.split('/');
  for (const p of params) {
    let text;
    if (p.in === 'path') {
      const i = tparts.indexOf(`{${p.name}}`);
      try { text = decodeURIComponent(parts[i]); } catch { text = parts[i]; }
    } else if (p.in === 'query') {
      text = query.get(p.name);
      if (text === null) continue;
    } else {
      continue;
    }
    if (!paramValid(p.schema, text)) bad.push(`${p.name}=${text}`);
  }
  return bad;
}

const lines = readFileSync(recordsPath, 'utf8').split('\n').filter(Boolean);
let skipped = 0;
let unparsable = 0;
const seen = new Set(); // operations + statuses met, for the summary
for (const line of lines) {
  let rec;
  try { rec = JSON.parse(line); } catch { unparsable += 1; continue; }
  const path = rec.path.split('?')[0];
  if (!isApiPath(path)) { skipped += 1; continue; }
  const example = `${rec.method} ${rec.path} → ${rec.status} ${String(rec.body).slice(0, 160)} (test ${rec.test}${rec.mode ? `, ${rec.mode}` : ''})`;
  const hasRid = Object.keys(rec.headers || {}).some((k) => k.toLowerCase() === 'x-request-id');
  const tpl = findPath(path);
  const method = rec.method.toLowerCase() === 'head' ? 'get' : rec.method.toLowerCase();
  let where;
  let ok = true;
  if (!hasRid) {
    // not answered by boxoffice: nginx's own refusals (400/413/414 of malformed
    // or oversized requests, 502/504 while an instance is down) are not the API's
    if ((rec.contentType || '').startsWith('text/html') && rec.status >= 400) { skipped += 1; continue; }
    fail(`${rec.method} ${tpl || path} ${rec.status}: no X-Request-Id`, example);
    continue;
  }
  if (tpl === null) {
    where = `${rec.method} (unknown path) ${rec.status}`;
    if (rec.status !== 404) {
      fail(`${where}: an unknown path must answer 404 ROUTE_NOT_FOUND`, example);
      ok = false;
    } else {
      ok = checkBody(where, rec, { 'application/json': { schema: errorSchema } }, example);
      if (ok && rec.method !== 'HEAD' && JSON.parse(rec.body).error.code !== 'ROUTE_NOT_FOUND') {
        fail(`${where}: not ROUTE_NOT_FOUND`, example);
        ok = false;
      }
    }
  } else if (!METHODS.includes(method) || !api.paths[tpl][method]) {
    where = `${rec.method} ${tpl} ${rec.status}`;
    const allow = Object.entries(rec.headers || {}).find(([k]) => k.toLowerCase() === 'allow');
    if (rec.status !== 405) {
      fail(`${where}: a method the path does not have must answer 405`, example);
      ok = false;
    } else {
      ok = checkBody(where, rec, { 'application/json': { schema: errorSchema } }, example);
      if (ok && !allow) {
        fail(`${where}: 405 without Allow`, example);
        ok = false;
      }
    }
  } else {
    const op = api.paths[tpl][method];
    where = `${rec.method} ${tpl} ${rec.status}`;
    const q = rec.path.indexOf('?');
    const bad = badParams(tpl, op, path, new URLSearchParams(q >= 0 ? rec.path.slice(q + 1) : ''));
    if (bad.length > 0 && rec.status !== 400) {
      fail(`${rec.method} ${tpl}: parameter not valid by its schema (${bad[0]}) answered ${rec.status}, not 400`, example);
      continue;
    }
    const resp = op.responses[String(rec.status)] || op.responses.default;
    if (!resp) {
      fail(`${where}: status not documented (documented: ${Object.keys(op.responses).join(', ')})`, example);
      continue;
    }
    ok = checkBody(where, rec, resp.content, example) && checkHeaders(where, rec, resp.headers, example);
  }
  seen.add(where);
  if (ok) passed += 1;
}

console.log(`${lines.length} responses recorded: ${lines.length - skipped - unparsable} of the API checked, ` +
  `${skipped} outside it or not answered by boxoffice, ${unparsable} unreadable; ${seen.size} distinct operation/status pairs`);
for (const [key, p] of [...problems.entries()].sort((a, b) => b[1].count - a[1].count)) {
  console.log(`FAIL ${key} (${p.count}×)\n     e.g. ${p.example}`);
}
console.log(`openapi: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
