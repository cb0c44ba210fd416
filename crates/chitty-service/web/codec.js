// The participant page's wire layer: protobuf for every message of proto/chittychat/v1/chittychat.proto, the
// gRPC-Web framing around it, and calls over fetch. It is plain ES2020 with no dependencies, so the same file
// runs in the page (inlined by the service) and in Node (for the tests, which load it with require).
//
// The schema table below is the only description of the contract in JavaScript. Everything else is driven
// by it, and crates/chitty-service/tests/web_codec.rs compares it, field by field, with the descriptor that
// the Rust code is generated from, so the two cannot drift apart. The text between the two marker lines is
// pure JSON apart from the `const SCHEMA =` before its first brace and the `;` after its last one.
//
// Numbers. Every uint64 field (seq, lamport, after_seq) decodes to a BigInt, never to a Number, so no value
// up to 2^64 - 1 loses precision. Encoding takes a BigInt, a Number that is a safe integer, or a string of
// decimal digits; anything else, negative or above 2^64 - 1 throws rather than being rounded or wrapped.
// Enums decode to Numbers, repeated fields to arrays, strings to strings (invalid UTF-8 throws). Fields
// that are absent decode to their proto3 defaults (0n, 0, "", []), and fields with default values are not
// encoded, as prost does, so bytes encoded here equal bytes encoded by prost.
"use strict";

// Everything is inside one function, so that only ChittyCodec is global in the page.
const ChittyCodec = (() => {
  // SCHEMA BEGIN
  const SCHEMA = {
    "package": "chittychat.v1",
    "service": {
      "name": "ChittyChat",
      "methods": {
        "Join": { "input": "JoinRequest", "output": "JoinResponse", "serverStreaming": false },
        "Broadcast": { "input": "BroadcastRequest", "output": "Event", "serverStreaming": true },
        "Publish": { "input": "PublishRequest", "output": "PublishResponse", "serverStreaming": false },
        "Leave": { "input": "LeaveRequest", "output": "LeaveResponse", "serverStreaming": false },
        "Participants": { "input": "ParticipantsRequest", "output": "ParticipantsResponse", "serverStreaming": false }
      }
    },
    "enums": {
      "EventKind": {
        "EVENT_KIND_UNSPECIFIED": 0,
        "EVENT_KIND_MESSAGE": 1,
        "EVENT_KIND_JOINED": 2,
        "EVENT_KIND_LEFT": 3
      }
    },
    "messages": {
      "Event": [
        { "number": 1, "name": "seq", "type": "uint64" },
        { "number": 2, "name": "lamport", "type": "uint64" },
        { "number": 3, "name": "kind", "type": "enum", "enum": "EventKind" },
        { "number": 4, "name": "participant", "type": "string" },
        { "number": 5, "name": "text", "type": "string" }
      ],
      "JoinRequest": [
        { "number": 1, "name": "name", "type": "string" },
        { "number": 2, "name": "lamport", "type": "uint64" },
        { "number": 3, "name": "join_secret", "type": "string" }
      ],
      "JoinResponse": [
        { "number": 1, "name": "session_token", "type": "string" },
        { "number": 2, "name": "lamport", "type": "uint64" },
        { "number": 3, "name": "seq", "type": "uint64" }
      ],
      "BroadcastRequest": [
        { "number": 1, "name": "lamport", "type": "uint64" },
        { "number": 2, "name": "after_seq", "type": "uint64" }
      ],
      "PublishRequest": [
        { "number": 1, "name": "text", "type": "string" },
        { "number": 2, "name": "lamport", "type": "uint64" },
        { "number": 3, "name": "idempotency_key", "type": "string" }
      ],
      "PublishResponse": [
        { "number": 1, "name": "lamport", "type": "uint64" },
        { "number": 2, "name": "seq", "type": "uint64" }
      ],
      "LeaveRequest": [
        { "number": 1, "name": "lamport", "type": "uint64" }
      ],
      "LeaveResponse": [
        { "number": 1, "name": "lamport", "type": "uint64" },
        { "number": 2, "name": "seq", "type": "uint64" }
      ],
      "ParticipantsRequest": [
        { "number": 1, "name": "lamport", "type": "uint64" }
      ],
      "ParticipantsResponse": [
        { "number": 1, "name": "names", "type": "string", "repeated": true },
        { "number": 2, "name": "seq", "type": "uint64" },
        { "number": 3, "name": "lamport", "type": "uint64" }
      ]
    }
  };
  // SCHEMA END

  // The protobuf wire types this codec reads and writes.
  const WIRE_VARINT = 0;
  const WIRE_FIXED64 = 1;
  const WIRE_LENGTH_DELIMITED = 2;
  const WIRE_FIXED32 = 5;

  const MAX_UINT64 = (1n << 64n) - 1n;

  // The wire type of each field type the schema may use.
  const WIRE_TYPE_OF = {
    "uint64": WIRE_VARINT,
    "enum": WIRE_VARINT,
    "string": WIRE_LENGTH_DELIMITED,
  };

  const utf8Encoder = new TextEncoder();
  // Fatal, so that a string field that is not valid UTF-8 is an error, as it is for the service.
  const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

  // A failure to encode or decode a message: the contract was not kept by one side.
  class CodecError extends Error {
    constructor(message) {
      super(message);
      this.name = "CodecError";
    }
  }

  // Turns a uint64 given as a BigInt, a safe-integer Number or a decimal string into a BigInt, refusing
  // anything that is not an exact integer from 0 to 2^64 - 1.
  function toUint64(value, what) {
    let big;
    if (typeof value === "bigint") {
      big = value;
    } else if (typeof value === "number") {
      if (!Number.isSafeInteger(value)) {
        throw new CodecError(`${what}: ${value} is not a safe integer; pass a BigInt or a decimal string`);
      }
      big = BigInt(value);
    } else if (typeof value === "string" && /^[0-9]+$/.test(value)) {
      big = BigInt(value);
    } else {
      throw new CodecError(`${what}: ${String(value)} is not an unsigned 64-bit integer`);
    }
    if (big < 0n || big > MAX_UINT64) {
      throw new CodecError(`${what}: ${big} is outside 0 to 2^64 - 1`);
    }
    return big;
  }

  // Collects the bytes of one message as it is encoded.
  class Writer {
    constructor() {
      this.bytes = [];
    }

    // Writes a varint of a BigInt from 0 to 2^64 - 1.
    varint(value) {
      let rest = value;
      while (rest >= 0x80n) {
        this.bytes.push(Number(rest & 0x7fn) | 0x80);
        rest >>= 7n;
      }
      this.bytes.push(Number(rest));
    }

    tag(number, wireType) {
      this.varint(BigInt(number * 8 + wireType));
    }

    lengthDelimited(bytes) {
      this.varint(BigInt(bytes.length));
      for (const byte of bytes) {
        this.bytes.push(byte);
      }
    }

    finish() {
      return Uint8Array.from(this.bytes);
    }
  }

  // Reads the fields of one encoded message.
  class Reader {
    constructor(bytes) {
      this.bytes = bytes;
      this.position = 0;
    }

    done() {
      return this.position >= this.bytes.length;
    }

    // Reads a varint of at most 10 bytes as a BigInt, refusing one that does not fit in 64 bits.
    varint() {
      let value = 0n;
      let shift = 0n;
      for (let index = 0; index < 10; index += 1) {
        if (this.position >= this.bytes.length) {
          throw new CodecError("a varint runs past the end of the message");
        }
        const byte = this.bytes[this.position];
        this.position += 1;
        value |= BigInt(byte & 0x7f) << shift;
        if ((byte & 0x80) === 0) {
          if (value > MAX_UINT64) {
            throw new CodecError("a varint is larger than 64 bits");
          }
          return value;
        }
        shift += 7n;
      }
      throw new CodecError("a varint is longer than 10 bytes");
    }

    take(length) {
      if (length > this.bytes.length - this.position) {
        throw new CodecError("a field runs past the end of the message");
      }
      const slice = this.bytes.subarray(this.position, this.position + length);
      this.position += length;
      return slice;
    }

    // Skips a field of a number this codec does not know, as proto3 requires.
    skip(wireType) {
      switch (wireType) {
        case WIRE_VARINT:
          this.varint();
          break;
        case WIRE_FIXED64:
          this.take(8);
          break;
        case WIRE_LENGTH_DELIMITED:
          this.take(Number(this.varint()));
          break;
        case WIRE_FIXED32:
          this.take(4);
          break;
        default:
          throw new CodecError(`wire type ${wireType} cannot be skipped`);
      }
    }
  }

  function fieldsOf(type) {
    const fields = SCHEMA.messages[type];
    if (fields === undefined) {
      throw new CodecError(`${type} is not a message of ${SCHEMA.package}`);
    }
    return fields;
  }

  function defaultValue(field) {
    if (field.repeated) {
      return [];
    }
    switch (field.type) {
      case "uint64":
        return 0n;
      case "enum":
        return 0;
      case "string":
        return "";
      default:
        throw new CodecError(`field ${field.name} has type ${field.type}, which this codec does not know`);
    }
  }

  function encodeValue(writer, type, field, value) {
    const what = `${type}.${field.name}`;
    switch (field.type) {
      case "uint64": {
        const big = toUint64(value, what);
        if (big !== 0n || field.repeated) {
          writer.tag(field.number, WIRE_VARINT);
          writer.varint(big);
        }
        break;
      }
      case "enum": {
        if (!Number.isInteger(value) || value < -2147483648 || value > 2147483647) {
          throw new CodecError(`${what}: ${String(value)} is not an enum value`);
        }
        if (value !== 0 || field.repeated) {
          writer.tag(field.number, WIRE_VARINT);
          // A negative int32 is encoded as its 64-bit two's complement, as protobuf requires.
          writer.varint(BigInt.asUintN(64, BigInt(value)));
        }
        break;
      }
      case "string": {
        if (typeof value !== "string") {
          throw new CodecError(`${what}: ${String(value)} is not a string`);
        }
        if (value !== "" || field.repeated) {
          writer.tag(field.number, WIRE_LENGTH_DELIMITED);
          writer.lengthDelimited(utf8Encoder.encode(value));
        }
        break;
      }
      default:
        throw new CodecError(`${what} has type ${field.type}, which this codec does not know`);
    }
  }

  // Encodes `message`, a plain object keyed by field name, as a `type` message. Missing fields take their
  // default values; a key that is not a field of `type` is an error, so a typo cannot silently drop a field.
  function encode(type, message) {
    const fields = fieldsOf(type);
    const names = new Set(fields.map((field) => field.name));
    for (const key of Object.keys(message)) {
      if (!names.has(key)) {
        throw new CodecError(`${type} has no field ${key}`);
      }
    }
    const writer = new Writer();
    for (const field of fields) {
      const value = message[field.name];
      if (value === undefined) {
        continue;
      }
      if (field.repeated) {
        if (!Array.isArray(value)) {
          throw new CodecError(`${type}.${field.name}: a repeated field takes an array`);
        }
        for (const item of value) {
          encodeValue(writer, type, field, item);
        }
      } else {
        encodeValue(writer, type, field, value);
      }
    }
    return writer.finish();
  }

  function decodeValue(reader, type, field, wireType) {
    const expected = WIRE_TYPE_OF[field.type];
    if (wireType !== expected) {
      throw new CodecError(`${type}.${field.name} arrived with wire type ${wireType}, not ${expected}`);
    }
    switch (field.type) {
      case "uint64":
        return reader.varint();
      case "enum":
        // An enum is an int32: the low 32 bits, as a signed number.
        return Number(BigInt.asIntN(32, reader.varint()));
      case "string": {
        const bytes = reader.take(Number(reader.varint()));
        try {
          return utf8Decoder.decode(bytes);
        } catch (error) {
          throw new CodecError(`${type}.${field.name} is not valid UTF-8`);
        }
      }
      default:
        throw new CodecError(`${type}.${field.name} has type ${field.type}, which this codec does not know`);
    }
  }

  // Decodes the bytes of a `type` message into a plain object with every field of the schema.
  function decode(type, bytes) {
    const fields = fieldsOf(type);
    const byNumber = new Map(fields.map((field) => [field.number, field]));
    const message = {};
    for (const field of fields) {
      message[field.name] = defaultValue(field);
    }
    const reader = new Reader(bytes);
    while (!reader.done()) {
      const key = reader.varint();
      const number = Number(key >> 3n);
      const wireType = Number(key & 7n);
      if (number === 0) {
        throw new CodecError(`${type} has a field numbered 0`);
      }
      const field = byNumber.get(number);
      if (field === undefined) {
        reader.skip(wireType);
      } else if (field.repeated) {
        message[field.name].push(decodeValue(reader, type, field, wireType));
      } else {
        // As protobuf requires, the last occurrence of a singular field wins.
        message[field.name] = decodeValue(reader, type, field, wireType);
      }
    }
    return message;
  }

  // gRPC-Web framing. A body is a sequence of frames: one flag byte, a 4-byte big-endian length, and that many
  // bytes. Flag 0x00 is a message; flag 0x80 (the high bit) marks the trailers frame, whose bytes are HTTP/1
  // header lines (`grpc-status: 0\r\n`). Bit 0x01 would mean a compressed message, which this page never asks for.
  const FRAME_HEADER_BYTES = 5;
  const FLAG_TRAILERS = 0x80;
  const FLAG_COMPRESSED = 0x01;

  // One message as a request body: a data frame around the encoded `type` message.
  function frameRequest(type, message) {
    const payload = encode(type, message);
    const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
    frame[0] = 0;
    new DataView(frame.buffer).setUint32(1, payload.length, false);
    frame.set(payload, FRAME_HEADER_BYTES);
    return frame;
  }

  // Reads trailer or header lines into a Map of lowercase names to values; a name given twice keeps both,
  // joined with ", " as HTTP does.
  function parseHeaderLines(text) {
    const metadata = new Map();
    for (const line of text.split(/\r?\n/)) {
      const colon = line.indexOf(":");
      if (colon <= 0) {
        continue;
      }
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      metadata.set(name, metadata.has(name) ? `${metadata.get(name)}, ${value}` : value);
    }
    return metadata;
  }

  // Splits a gRPC-Web response body into frames, however the body arrives in chunks: push each chunk, and
  // take the frames it completed. A frame split across chunks waits for the rest.
  class FrameDecoder {
    constructor() {
      this.buffer = new Uint8Array(0);
    }

    // Adds `chunk` (a Uint8Array) and returns the frames now complete, in order: `{ data: Uint8Array }` for a
    // message, `{ trailers: Map }` for the trailers frame.
    push(chunk) {
      const joined = new Uint8Array(this.buffer.length + chunk.length);
      joined.set(this.buffer, 0);
      joined.set(chunk, this.buffer.length);
      const frames = [];
      let offset = 0;
      while (joined.length - offset >= FRAME_HEADER_BYTES) {
        const flag = joined[offset];
        const length = new DataView(joined.buffer, joined.byteOffset + offset + 1, 4).getUint32(0, false);
        if (joined.length - offset - FRAME_HEADER_BYTES < length) {
          break;
        }
        const body = joined.slice(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + length);
        offset += FRAME_HEADER_BYTES + length;
        if ((flag & FLAG_TRAILERS) !== 0) {
          frames.push({ trailers: parseHeaderLines(new TextDecoder("utf-8").decode(body)) });
        } else if ((flag & FLAG_COMPRESSED) !== 0) {
          throw new CodecError("the service sent a compressed message, which this page did not ask for");
        } else {
          frames.push({ data: body });
        }
      }
      this.buffer = joined.slice(offset);
      return frames;
    }

    // Whether part of a frame is still waiting for its rest: at the end of the body, that is a cut-off.
    hasPartialFrame() {
      return this.buffer.length > 0;
    }
  }

  // gRPC status codes by name, for the codes the page acts on.
  const Code = Object.freeze({
    OK: 0,
    CANCELLED: 1,
    UNKNOWN: 2,
    INVALID_ARGUMENT: 3,
    DEADLINE_EXCEEDED: 4,
    NOT_FOUND: 5,
    ALREADY_EXISTS: 6,
    PERMISSION_DENIED: 7,
    RESOURCE_EXHAUSTED: 8,
    FAILED_PRECONDITION: 9,
    ABORTED: 10,
    OUT_OF_RANGE: 11,
    UNIMPLEMENTED: 12,
    INTERNAL: 13,
    UNAVAILABLE: 14,
    DATA_LOSS: 15,
    UNAUTHENTICATED: 16,
  });

  // A call that ended with a status other than OK. `metadata` holds the response's headers and trailers
  // (lowercase names), where the service puts `lamport`, `retry-after-ms`, `first-held-seq` and `last-seq`.
  // `transport` is true when the status was made up here because the service could not be reached or the
  // connection broke, rather than sent by the service.
  class GrpcError extends Error {
    constructor(code, message, metadata, transport) {
      super(message);
      this.name = "GrpcError";
      this.code = code;
      this.metadata = metadata || new Map();
      this.transport = Boolean(transport);
    }

    // A metadata entry that is a decimal number, as a BigInt, or null when absent or not a number.
    number(name) {
      const value = this.metadata.get(name);
      return typeof value === "string" && /^[0-9]+$/.test(value.trim()) ? BigInt(value.trim()) : null;
    }
  }

  // The grpc-message value is percent-encoded; a malformed one is shown as it came.
  function decodeGrpcMessage(value) {
    if (value === undefined) {
      return "";
    }
    try {
      return decodeURIComponent(value);
    } catch (error) {
      return value;
    }
  }

  // The error a status in `metadata` describes, or null when it says OK.
  function statusError(metadata) {
    const code = Number(metadata.get("grpc-status"));
    if (code === Code.OK) {
      return null;
    }
    const known = Number.isInteger(code) && code >= 0 && code <= 16;
    return new GrpcError(
      known ? code : Code.UNKNOWN,
      decodeGrpcMessage(metadata.get("grpc-message")),
      metadata,
      false,
    );
  }

  // The gRPC code for an HTTP status that is not 200, as the gRPC-Web protocol maps them.
  function codeOfHttpStatus(status) {
    switch (status) {
      case 400:
        return Code.INTERNAL;
      case 401:
        return Code.UNAUTHENTICATED;
      case 403:
        return Code.PERMISSION_DENIED;
      case 404:
        return Code.UNIMPLEMENTED;
      case 429:
      case 502:
      case 503:
      case 504:
        return Code.UNAVAILABLE;
      default:
        return Code.UNKNOWN;
    }
  }

  function headersToMap(headers) {
    const metadata = new Map();
    headers.forEach((value, name) => metadata.set(name.toLowerCase(), value));
    return metadata;
  }

  // The status of a call that never reached the service, or whose connection broke: the message is only
  // the cause (such as "Failed to fetch"), since the caller knows which service it called.
  function transportError(cause) {
    const reason = cause && cause.message ? cause.message : String(cause);
    return new GrpcError(Code.UNAVAILABLE, reason, new Map(), true);
  }

  // The path of a method of the service, such as `/chittychat.v1.ChittyChat/Join`.
  function methodPath(method) {
    return `/${SCHEMA.package}.${SCHEMA.service.name}/${method}`;
  }

  function methodOf(method) {
    const descriptor = SCHEMA.service.methods[method];
    if (descriptor === undefined) {
      throw new CodecError(`${SCHEMA.service.name} has no method ${method}`);
    }
    return descriptor;
  }

  // Sends one request of `method` with `metadata` (an object of header names to values) and returns the
  // fetch Response once its headers arrived, or throws the GrpcError of a trailers-only answer, an HTTP
  // error or an unreachable service. `options.keepalive` lets the request outlive the page (for a Leave when
  // the tab closes), `options.signal` aborts it, and `options.base` is the service's URL ("" for the page's).
  async function send(method, message, metadata, options) {
    const descriptor = methodOf(method);
    const path = methodPath(method);
    const headers = {
      "content-type": "application/grpc-web+proto",
      "x-grpc-web": "1",
      "accept": "application/grpc-web+proto",
    };
    for (const [name, value] of Object.entries(metadata || {})) {
      headers[name] = value;
    }
    let response;
    try {
      response = await fetch(`${(options && options.base) || ""}${path}`, {
        method: "POST",
        headers,
        body: frameRequest(descriptor.input, message),
        keepalive: Boolean(options && options.keepalive),
        signal: options && options.signal,
        cache: "no-store",
      });
    } catch (error) {
      throw transportError(error);
    }
    const headerMetadata = headersToMap(response.headers);
    if (response.status !== 200) {
      throw new GrpcError(codeOfHttpStatus(response.status), `the service answered HTTP ${response.status}`, headerMetadata, response.status >= 500);
    }
    // A call refused before any message is answered with the status in the headers and no body.
    if (headerMetadata.has("grpc-status")) {
      const error = statusError(headerMetadata);
      if (error !== null) {
        throw error;
      }
    }
    return { response, headerMetadata, descriptor };
  }

  // Reads the frames of a response body as they come; yields decoded messages and returns the trailers. A
  // status other than OK throws its GrpcError; a body that ends without trailers throws UNAVAILABLE.
  async function* readBody(opened) {
    const { response, headerMetadata, descriptor } = opened;
    if (response.body === null) {
      throw new GrpcError(Code.INTERNAL, "the service's response has no body", headerMetadata, false);
    }
    const reader = response.body.getReader();
    const decoder = new FrameDecoder();
    try {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw transportError(error);
        }
        if (chunk.done) {
          break;
        }
        for (const frame of decoder.push(chunk.value)) {
          if (frame.trailers !== undefined) {
            const metadata = new Map([...headerMetadata, ...frame.trailers]);
            const error = statusError(metadata);
            if (error !== null) {
              throw error;
            }
            return metadata;
          }
          yield decode(descriptor.output, frame.data);
        }
      }
    } finally {
      reader.releaseLock();
    }
    if (headerMetadata.has("grpc-status")) {
      return headerMetadata;
    }
    throw transportError(new Error("the response ended before its status"));
  }

  // Calls a unary method: resolves to `{ message, metadata }`, or rejects with a GrpcError.
  async function call(method, message, metadata, options) {
    const opened = await send(method, message, metadata, options);
    if (opened.descriptor.serverStreaming) {
      throw new CodecError(`${method} streams; use stream()`);
    }
    const body = readBody(opened);
    let answer = null;
    for (;;) {
      const step = await body.next();
      if (step.done) {
        if (answer === null) {
          throw new GrpcError(Code.INTERNAL, `${method} answered OK without a message`, step.value, false);
        }
        return { message: answer, metadata: step.value };
      }
      answer = step.value;
    }
  }

  // Opens a server-streaming method: resolves once the stream is open (its headers arrived) to an async
  // iterator of decoded messages whose `return` value is the trailers' metadata; rejects with a GrpcError if
  // the call is refused before the stream opens. The iterator throws the GrpcError that ends a stream.
  async function stream(method, message, metadata, options) {
    const opened = await send(method, message, metadata, options);
    if (!opened.descriptor.serverStreaming) {
      throw new CodecError(`${method} is unary; use call()`);
    }
    return readBody(opened);
  }

  return Object.freeze({
    SCHEMA,
    Code,
    CodecError,
    GrpcError,
    FrameDecoder,
    encode,
    decode,
    frameRequest,
    parseHeaderLines,
    methodPath,
    call,
    stream,
  });
})();

if (typeof module !== "undefined") {
  module.exports = ChittyCodec;
}
