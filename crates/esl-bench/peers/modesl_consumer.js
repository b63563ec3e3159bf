// modesl (npm) consumer for the ESL ingest benchmark.
//
// Usage: node modesl_consumer.js HOST PORT EXPECTED_EVENTS
// Connects to `esl-ingest --serve`, subscribes `event plain ALL`, counts events (and the
// conference::maintenance ones) from 'esl::event::**' until the stream ends, prints one JSON line
// in the shape of esl-bench's ChildReport.
//
// modesl decodes every plain header value with decodeURIComponent, which throws URIError on %XX
// sequences that are not UTF-8. The throw escapes the socket's 'data' handler; an application
// survives it only with a process-level 'uncaughtException' handler, which is what this script
// installs: each such throw is one event modesl could not parse (counted as parse_errors). The
// parser has already consumed that frame, but the frames after it in the same read stay buffered
// until the next read, and the next read again stops at the next bad frame: the buffer then grows
// without bound and Buffer.concat makes every read copy all of it (quadratic; measured: ~400
// events/s). So after each throw the script re-drives the parser over what is buffered (and once
// more at the end of the stream). That is a harness step, not something modesl does; it measures
// modesl's parsing cost with the failures counted, rather than the stall.
'use strict';

const esl = require('modesl');

const [host, portText, expectedText] = process.argv.slice(2);
const port = parseInt(portText, 10);
const expected = parseInt(expectedText, 10);
let events = 0;
let conference = 0;
let parseErrors = 0;
let firstError = '';
let done = false;

function noteError(err) {
  parseErrors += 1;
  if (!firstError) firstError = `${err.name}: ${err.message}`;
}

// Parses whatever the parser has buffered, counting throws, until it needs more bytes.
function drive(parser) {
  for (let guard = 0; parser && parser.buffer.length && guard < 1e7; guard++) {
    const before = parser.buffer.length;
    try {
      if (parser.bodyLen > 0) parser._parseBody(); else parser._parseHeaders();
    } catch (err) {
      noteError(err);
    }
    if (parser.buffer.length === before) break;
  }
}

process.on('uncaughtException', (err) => {
  noteError(err);
  drive(conn && conn.parser);
});

const cpu0 = process.cpuUsage();
const start = process.hrtime.bigint();

function finish(note) {
  if (done) return;
  done = true;
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const notes = [note];
  if (parseErrors) notes.push(`first error: ${firstError}`);
  console.log(JSON.stringify({
    kind: `modesl 1.2.1 (Node ${process.version})`,
    events,
    conference,
    secs,
    cpu_secs: (cpu.user + cpu.system) / 1e6,
    vm_hwm_kib: Math.round(process.resourceUsage().maxRSS),
    parse_errors: parseErrors,
    note: notes.filter(Boolean).join('; '),
  }));
  process.exit(0);
}

let conn = null;
conn = new esl.Connection(host, port, 'ClueCon', () => {
  conn.events('plain', 'all');
});

conn.on('esl::event::**', (event, headers) => {
  const type = headers && headers['Content-Type'];
  if (type !== 'text/event-plain') return;
  events += 1;
  if (event.getHeader('Event-Subclass') === 'conference::maintenance' && event.getHeader('Action')) {
    conference += 1;
  }
  if (events >= expected) finish('');
});

conn.on('esl::end', () => {
  drive(conn.parser);
  finish('stream ended');
});
