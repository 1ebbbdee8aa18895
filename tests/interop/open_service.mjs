// Opens what a running izinli service wrote to its database, with libsodium.js only and the
// formats of docs/crypto.md: no izinli code. Reads JSON on stdin (binary values base64),
// prints JSON.
//
// in:  {passphrase, wrapped_secret,                  // tenants.wrapped_secret
//       data_keys: [[id, sealed], ...],              // data_keys rows of the tenant
//       fields: {label: blob, ...},                  // any sealed column values
//       sealed_export: {format, tenant_id, sealed}}  // GET /api/v1/subjects/export?sealed=true
// out: {fields: {label: utf-8 text}, export: the export's inner document with every
//       "<name>_sealed" value replaced by "<name>": its opened UTF-8 text}
import sodium from "libsodium-wrappers-sumo";

const b64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const utf8 = (u8) => new TextDecoder("utf-8", { fatal: true }).decode(u8);

function fail(message) {
  process.stderr.write(`open_service.mjs: ${message}\n`);
  process.exit(1);
}

// docs/crypto.md, "Wrapped tenant secret key": "IZTK" | 0x01 | opslimit u32 BE |
// memlimit u64 BE | salt 16 | nonce 24 | box (MAC 16 + X25519 secret 32)
function unwrapSecret(wrapped, passphrase) {
  if (wrapped.length !== 105) fail("wrapped secret is not 105 bytes");
  const view = new DataView(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
  if (Buffer.from(wrapped.subarray(0, 4)).toString("latin1") !== "IZTK") fail("bad magic");
  if (wrapped[4] !== 1) fail("unknown wrapped secret version");
  const key = sodium.crypto_pwhash(
    32, new TextEncoder().encode(passphrase.normalize("NFC")), wrapped.subarray(17, 33),
    view.getUint32(5), Number(view.getBigUint64(9)), sodium.crypto_pwhash_ALG_ARGON2ID13,
  );
  return sodium.crypto_secretbox_open_easy(wrapped.subarray(57), wrapped.subarray(33, 57), key);
}

class Tenant {
  constructor(secret) {
    this.secret = secret;
    this.public = sodium.crypto_scalarmult_base(secret);
    this.deks = new Map(); // hex dek id -> dek
  }

  // docs/crypto.md, "Sealed DEK": crypto_box_seal(dek, tenant public key), 80 bytes
  addDek(id, sealed) {
    const dek = sodium.crypto_box_seal_open(sealed, this.public, this.secret);
    if (dek.length !== 32) fail("data key is not 32 bytes");
    this.deks.set(Buffer.from(id).toString("hex"), dek);
  }

  // docs/crypto.md, "Sealed field": 0x01 | dek id 16 | nonce 24 | box
  openField(blob) {
    if (blob[0] !== 1) fail("unknown field version");
    const dek = this.deks.get(Buffer.from(blob.subarray(1, 17)).toString("hex"));
    if (!dek) fail("field names a data key that was not given");
    return sodium.crypto_secretbox_open_easy(blob.subarray(41), blob.subarray(17, 41), dek);
  }

  // docs/crypto.md, "Sealed KVKK export": the whole document crypto_box_seal'ed
  openExport(exported) {
    if (exported.format !== "izinli.sealed-subject-export.v1") fail("not a sealed export");
    const inner = JSON.parse(utf8(
      sodium.crypto_box_seal_open(b64(exported.sealed), this.public, this.secret)));
    for (const [idHex, sealed] of Object.entries(inner.data_keys)) {
      this.addDek(Buffer.from(idHex, "hex"), b64(sealed));
    }
    delete inner.data_keys;
    return this.openTree(inner);
  }

  openTree(value) {
    if (Array.isArray(value)) return value.map((v) => this.openTree(v));
    if (value === null || typeof value !== "object") return value;
    const out = {};
    for (const [key, v] of Object.entries(value)) {
      if (key.endsWith("_sealed")) {
        out[key.slice(0, -"_sealed".length)] = v === null ? null : utf8(this.openField(b64(v)));
      } else {
        out[key] = this.openTree(v);
      }
    }
    return out;
  }
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

await sodium.ready;
const input = await readStdin();
const tenant = new Tenant(unwrapSecret(b64(input.wrapped_secret), input.passphrase));
for (const [id, sealed] of input.data_keys) tenant.addDek(b64(id), b64(sealed));
const fields = {};
for (const [label, blob] of Object.entries(input.fields)) {
  fields[label] = utf8(tenant.openField(b64(blob)));
}
process.stdout.write(JSON.stringify({
  fields,
  export: input.sealed_export ? tenant.openExport(input.sealed_export) : null,
}) + "\n");
