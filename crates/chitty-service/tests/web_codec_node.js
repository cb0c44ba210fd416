// The Node side of tests/web_codec.rs: loads the page's codec (web/codec.js, the very file the service
// inlines) and runs what the Rust test hands it on standard input, printing the results as one JSON object.
//
// Input: `{ "cases": [...], "framing": {...}, "calls": [...] }`
// - each case `{ type, hex, json }`: decode the prost-encoded `hex`, encode the result again, and encode
//   `json` (uint64 given as decimal strings) from scratch;
// - framing `{ body_hex, message_type }`: split the body at every possible point, and into chunks of every
//   size, and decode each way;
// - each call `{ name, method, request, status, headers, chunks_hex }`: run `call` or `stream` against a
//   stand-in fetch that answers with that status, those headers and that body.
"use strict";

const path = require("path");
const codec = require(path.join(__dirname, "..", "web", "codec.js"));

// BigInts become decimal strings and Maps objects, so that the Rust side can compare plain JSON.
function plain(value) {
  if (typeof value === "bigint") {
    return value.toString();
  }
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([key, item]) => [key, plain(item)]));
  }
  if (value instanceof Uint8Array) {
    return toHex(value);
  }
  if (Array.isArray(value)) {
    return value.map(plain);
  }
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, plain(item)]));
  }
  return value;
}

function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

function fromHex(hex) {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function attempt(run) {
  try {
    return { ok: plain(run()) };
  } catch (error) {
    return { error: `${error.name}: ${error.message}` };
  }
}

function runCase(testCase) {
  const decoded = attempt(() => codec.decode(testCase.type, fromHex(testCase.hex)));
  const reencoded = attempt(() => codec.encode(testCase.type, codec.decode(testCase.type, fromHex(testCase.hex))));
  const encoded = attempt(() => codec.encode(testCase.type, testCase.json));
  return { type: testCase.type, decoded, reencoded, encoded };
}

function decodeChunks(chunks, messageType) {
  const decoder = new codec.FrameDecoder();
  const frames = [];
  for (const chunk of chunks) {
    for (const frame of decoder.push(chunk)) {
      frames.push(frame.data !== undefined ? { message: codec.decode(messageType, frame.data) } : { trailers: frame.trailers });
    }
  }
  return { frames: plain(frames), partial: decoder.hasPartialFrame() };
}

// Every way of cutting the body tried, each with its result; the Rust side checks they all agree.
function runFraming(framing) {
  const body = fromHex(framing.body_hex);
  const results = [];
  for (let cut = 0; cut <= body.length; cut += 1) {
    results.push({ how: `cut at ${cut}`, result: attempt(() => decodeChunks([body.subarray(0, cut), body.subarray(cut)], framing.message_type)) });
  }
  for (let size = 1; size <= body.length; size += 1) {
    const chunks = [];
    for (let start = 0; start < body.length; start += size) {
      chunks.push(body.subarray(start, start + size));
    }
    results.push({ how: `chunks of ${size}`, result: attempt(() => decodeChunks(chunks, framing.message_type)) });
  }
  const cut = Math.min(3, body.length);
  results.push({ how: "cut short", result: attempt(() => decodeChunks([body.subarray(0, body.length - cut)], framing.message_type)) });
  return results;
}

// A stand-in for fetch that records the request and answers with the given status, headers and body chunks.
function fakeFetch(answer, requests) {
  return async (url, init) => {
    requests.push({ url, headers: init.headers, body: toHex(init.body), keepalive: init.keepalive });
    if (answer.unreachable) {
      throw new TypeError("Failed to fetch");
    }
    const chunks = answer.chunks_hex.map(fromHex);
    const body = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) {
          controller.enqueue(chunk);
        }
        controller.close();
      },
    });
    return new Response(body, { status: answer.status, headers: answer.headers });
  };
}

async function runCall(spec) {
  const requests = [];
  globalThis.fetch = fakeFetch(spec, requests);
  const outcome = { name: spec.name, messages: [] };
  try {
    if (codec.SCHEMA.service.methods[spec.method].serverStreaming) {
      const events = await codec.stream(spec.method, spec.request, spec.metadata, {});
      for (;;) {
        const step = await events.next();
        if (step.done) {
          outcome.trailers = plain(step.value);
          break;
        }
        outcome.messages.push(plain(step.value));
      }
    } else {
      const answer = await codec.call(spec.method, spec.request, spec.metadata, {});
      outcome.messages.push(plain(answer.message));
      outcome.trailers = plain(answer.metadata);
    }
  } catch (error) {
    outcome.error = {
      name: error.name,
      code: error.code,
      message: error.message,
      transport: error.transport,
      lamport: error.number ? plain(error.number("lamport")) : null,
    };
  }
  outcome.requests = requests;
  return outcome;
}

async function main() {
  const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
  const output = {
    cases: input.cases.map(runCase),
    framing: runFraming(input.framing),
    calls: [],
  };
  for (const spec of input.calls) {
    output.calls.push(await runCall(spec));
  }
  process.stdout.write(JSON.stringify(output));
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(1);
});
