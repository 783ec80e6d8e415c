// Peer side of the pos benchmark: the npm package iso_8583 decodes the same
// messages payguard decoded (hex frames with a 2-byte length, one a line).
// Prints {"decode_per_s_median": ...} over R runs, per CPU-second of the process.
'use strict';
const iso8583 = require('iso_8583');
const fs = require('fs');
const [file, runsArg] = process.argv.slice(2);
const runs = Number(runsArg || 5);
const frames = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l).map((l) => Buffer.from(l, 'hex'));
const rates = [];
let fields = 0;
for (let r = 0; r < runs; r++) {
  const c0 = process.cpuUsage(); // CPU time, as for payguard: the machine is shared
  for (const f of frames) {
    const j = new iso8583().getIsoJSON(f, {});
    if (j.error) throw new Error(j.error);
    if (r === 0) fields += Object.keys(j).length;
  }
  const c = process.cpuUsage(c0);
  const s = (c.user + c.system) / 1e6;
  rates.push(frames.length / s);
}
rates.sort((a, b) => a - b);
console.log(JSON.stringify({ messages: frames.length, runs, fields, decode_per_s_median: Math.round(rates[runs >> 1]) }));
