// The independent consumer of issue 15's acceptance: the npm package `nats`
// (nats.js, pinned in npm/package-lock.json) reads every message of the
// event stream through an ordered JetStream consumer and checks each one
// against the CloudEvents 1.0 JSON format on its own (no payguard code).
// Usage: node consume.mjs SERVERS [STREAM] [--delete]   (SERVERS comma-separated)
// Prints one JSON summary: count, per-type counts, ids, problems. With
// --delete it only removes the stream (a test's clean start) and prints {}.
import { connect } from "nats";

const servers = process.argv[2].split(",");
const stream = process.argv[3] || "PAYGUARD";
const nc = await connect({ servers, timeout: 5000 });
const jsm = await nc.jetstreamManager();
if (process.argv[4] === "--delete") {
  try {
    await jsm.streams.delete(stream);
  } catch (e) {
    if (!String(e.message).includes("not found")) throw e;
  }
  await nc.close();
  console.log("{}");
  process.exit(0);
}
const info = await jsm.streams.info(stream);
const last = info.state.last_seq;
const out = { count: 0, stream_messages: info.state.messages, types: {}, ids: [], problems: [] };
const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function check(ev, m) {
  const bad = (why) => out.problems.push(`seq ${m.seq}: ${why}`);
  if (typeof ev !== "object" || ev === null || Array.isArray(ev)) return bad("not an object");
  if (ev.specversion !== "1.0") bad("specversion");
  for (const a of ["id", "source", "type"])
    if (typeof ev[a] !== "string" || ev[a].length === 0) bad(`missing ${a}`);
  if (ev.time !== undefined && (!rfc3339.test(ev.time) || isNaN(Date.parse(ev.time)))) bad("time");
  if (ev.subject !== undefined && typeof ev.subject !== "string") bad("subject");
  if (ev.datacontenttype !== undefined && ev.datacontenttype !== "application/json")
    bad("datacontenttype");
  if (m.subject !== ev.type) bad(`NATS subject ${m.subject} is not the type ${ev.type}`);
  const hid = m.headers ? m.headers.get("Nats-Msg-Id") : "";
  if (hid !== ev.id) bad(`Nats-Msg-Id ${hid} is not the event id ${ev.id}`);
}

if (last > 0) {
  const js = nc.jetstream();
  const c = await js.consumers.get(stream); // an ordered consumer
  const msgs = await c.consume();
  for await (const m of msgs) {
    let ev;
    try {
      ev = JSON.parse(new TextDecoder().decode(m.data));
    } catch (e) {
      out.problems.push(`seq ${m.seq}: not JSON`);
    }
    if (ev) {
      check(ev, m);
      out.types[ev.type] = (out.types[ev.type] || 0) + 1;
      out.ids.push(ev.id);
    }
    out.count++;
    if (m.seq >= last) break;
  }
}
await nc.close();
console.log(JSON.stringify(out));
