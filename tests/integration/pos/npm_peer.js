// The peer side of payguard's ISO 8583 cross-check: the npm package iso_8583.
// usage: node npm_peer.js decode|encode ascii|npm  (JSON array on stdin)
//   decode: hex frames (2-byte length prefix) -> array of field objects
//   encode: field objects -> hex frames (2-byte length prefix)
// "ascii": bitmap as 32 hex characters; "npm": the package's default binary bitmap.
'use strict';
const iso8583 = require('iso_8583');

const [op, mode] = process.argv.slice(2);
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const asciiBitmap = { 1: { ContentType: 'an', Label: 'Bitmap', LenType: 'fixed', MaxLen: 32 } };
const out = input.map((item) => {
  if (op === 'decode') {
    const cfg = mode === 'ascii' ? { bitmapEncoding: 'utf8' } : {};
    const r = new iso8583().getIsoJSON(Buffer.from(item, 'hex'), cfg);
    if (r.error) throw new Error('peer decode: ' + r.error);
    return r;
  }
  const msg = new iso8583(item, mode === 'ascii' ? asciiBitmap : {});
  const b = msg.getBufferMessage();
  if (b.error) throw new Error('peer encode: ' + b.error);
  return b.toString('hex');
});
process.stdout.write(JSON.stringify(out));
