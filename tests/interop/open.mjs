// Opens izinli blobs with libsodium.js, an implementation independent of PyNaCl, following
// the recipe in docs/crypto.md. Reads JSON on stdin (binary values base64), prints JSON.
//
// in:  {passphrase, wrapped_secret, dek_id, sealed_dek, field_blobs: [...],
//       lookup_key, addresses: [...], master_key, master_blob}
// out: {plaintexts: [base64...], texts: [utf-8...], blind_indexes: [base64...],
//       master_plaintext, kdf: {opslimit, memlimit}}
import sodium from "libsodium-wrappers-sumo";

const b64 = (s) => new Uint8Array(Buffer.from(s, "base64"));
const out64 = (u8) => Buffer.from(u8).toString("base64");

function fail(message) {
  process.stderr.write(`open.mjs: ${message}\n`);
  process.exit(1);
}

// Wrapped secret v1: "IZTK" | 0x01 | opslimit u32 BE | memlimit u64 BE | salt 16 | nonce 24 | box
function unwrapSecret(wrapped, passphrase) {
  const view = new DataView(wrapped.buffer, wrapped.byteOffset, wrapped.byteLength);
  if (Buffer.from(wrapped.subarray(0, 4)).toString("latin1") !== "IZTK") fail("bad magic");
  if (wrapped[4] !== 1) fail("unknown wrapped secret version");
  const opslimit = view.getUint32(5);
  const memlimit = Number(view.getBigUint64(9));
  const salt = wrapped.subarray(17, 33);
  const nonce = wrapped.subarray(33, 57);
  const password = new TextEncoder().encode(passphrase.normalize("NFC"));
  const key = sodium.crypto_pwhash(
    sodium.crypto_secretbox_KEYBYTES, password, salt, opslimit, memlimit,
    sodium.crypto_pwhash_ALG_ARGON2ID13,
  );
  const secret = sodium.crypto_secretbox_open_easy(wrapped.subarray(57), nonce, key);
  return { secret, opslimit, memlimit };
}

// Field blob v1: 0x01 | dek_id 16 | nonce 24 | box
function openField(blob, dekId, dek) {
  if (blob[0] !== 1) fail("unknown field version");
  if (Buffer.compare(blob.subarray(1, 17), dekId) !== 0) fail("field uses another data key");
  return sodium.crypto_secretbox_open_easy(blob.subarray(41), blob.subarray(17, 41), dek);
}

// Master-wrapped blob v1: 0x01 | nonce 24 | box
function openMaster(blob, key) {
  if (blob[0] !== 1) fail("unknown master blob version");
  return sodium.crypto_secretbox_open_easy(blob.subarray(25), blob.subarray(1, 25), key);
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

await sodium.ready;
const input = await readStdin();
const { secret, opslimit, memlimit } = unwrapSecret(b64(input.wrapped_secret), input.passphrase);
const publicKey = sodium.crypto_scalarmult_base(secret);
const dek = sodium.crypto_box_seal_open(b64(input.sealed_dek), publicKey, secret);
const plaintexts = input.field_blobs.map((f) => openField(b64(f), b64(input.dek_id), dek));
// Blind index: keyed BLAKE2b with a 16-byte digest over the UTF-8 normalised address.
const blindIndexes = input.addresses.map((a) =>
  sodium.crypto_generichash(16, new TextEncoder().encode(a), b64(input.lookup_key)),
);
const masterPlain = openMaster(b64(input.master_blob), b64(input.master_key));
process.stdout.write(JSON.stringify({
  plaintexts: plaintexts.map(out64),
  texts: plaintexts.map((p) => new TextDecoder("utf-8").decode(p)),
  blind_indexes: blindIndexes.map(out64),
  master_plaintext: out64(masterPlain),
  kdf: { opslimit, memlimit },
}) + "\n");
