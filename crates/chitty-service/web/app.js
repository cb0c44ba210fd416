// The participant page: what the terminal participant does, in a browser tab.
//
// The page is one participant. It joins under a name, opens its Broadcast stream, shows every event with the
// event's Lamport time and its own clock right after receiving it, publishes what is typed, and leaves when
// the tab closes. Its engine follows crates/chitty-participant/src/session.rs step for step, so that a page
// and a terminal participant are the same participant to the service and to `chitty-chat check`:
//
// - Lamport rules: the clock ticks before every request and the request carries the new time; every
//   response, every event and every error that carries the service's time (the `lamport` metadata entry)
//   is witnessed, max(clock, stamp) + 1, before anything else is done with it. The clock is a BigInt.
// - Connection: the link is up (stream open) or down (a reconnection is due). When the stream breaks or the
//   service restarts, reconnection is tried with exponential backoff and jitter (100 ms doubling to 5 s,
//   each delay between half and all of its base), forever: a tab is watched by its user, who can close it.
//   A reconnection asks who is present, then resumes the stream after the last seq shown, so nothing is
//   missed or shown twice; if the session ended meanwhile it joins again, and if the service no longer
//   holds what was missed it says which events are lost and carries on.
// - Publishing: typed messages wait in an outbox and are published one at a time, in order, each with an
//   idempotency key chosen when it was typed and kept across retries, so a retry is never published twice.
//   RESOURCE_EXHAUSTED pauses publishing for the service's `retry-after-ms`.
// - Leaving: closing the tab sends a Leave with `keepalive`, which outlives the page; a tab that vanishes
//   without one is announced left by the service after its grace period.
// - Safety: other people's text is only ever set with textContent, never parsed as HTML, and control and
//   bidi characters are shown escaped as `\u{..}`, exactly as the terminal client shows them.
// - Logs: every step is recorded as a JSON line in the participant vocabulary of docs/logs.md (target
//   `chitty_web`, component = the name), which window.chittyLog() returns and #download-log saves, so a
//   run with browser participants can be checked by `chitty-chat check` like any other.
"use strict";

// The pure part: showing text safely, checking input, backoff. No DOM and no network, so Node can load
// it for the tests (crates/chitty-participant/tests/web_page.rs compares it with the terminal client).
const ChittyPage = (() => {
  /** The most characters a message may have, counted in Unicode scalar values as the service does. */
  const MAX_MESSAGE_CHARS = 128;
  /** The most characters a name may have. */
  const MAX_NAME_CHARS = 32;
  /** The base delay of the first reconnection attempt, and the largest base delay. */
  const BACKOFF_INITIAL_MS = 100;
  const BACKOFF_MAX_MS = 5000;

  /** Whether showing this code point as itself could move the cursor, change the terminal or reorder the
   *  line: the control characters (C0, DEL, C1) and the bidi formatting characters, as output.rs says. */
  function isUnsafeToShow(codePoint) {
    return (
      codePoint <= 0x1f ||
      (codePoint >= 0x7f && codePoint <= 0x9f) ||
      codePoint === 0x061c ||
      codePoint === 0x200e ||
      codePoint === 0x200f ||
      (codePoint >= 0x202a && codePoint <= 0x202e) ||
      (codePoint >= 0x2066 && codePoint <= 0x2069)
    );
  }

  /** `text` with every unsafe character shown as `\u{hex}`, as the terminal client shows other people's text. */
  function escaped(text) {
    let shown = "";
    for (const character of text) {
      const codePoint = character.codePointAt(0);
      shown += isUnsafeToShow(codePoint) ? `\\u{${codePoint.toString(16)}}` : character;
    }
    return shown;
  }

  /** How many characters `text` has, in Unicode scalar values (a string's iterator walks code points). */
  function charCount(text) {
    let count = 0;
    for (const _ of text) {
      count += 1;
    }
    return count;
  }

  function codePointName(codePoint) {
    return `U+${codePoint.toString(16).toUpperCase().padStart(4, "0")}`;
  }

  const CONTROL = /^\p{Cc}$/u;
  const WHITESPACE = /^\p{White_Space}$/u;
  const FORMAT = /^\p{Cf}$/u;

  /** Why the service would refuse `name`, in its words (chitty-core's validate.rs), or null. */
  function nameProblem(name) {
    if (name === "") {
      return "name is empty";
    }
    const characters = [...name];
    if (characters.length > MAX_NAME_CHARS) {
      return `name is ${characters.length} characters long, over the limit of ${MAX_NAME_CHARS}`;
    }
    for (const [index, character] of characters.entries()) {
      const unprintable =
        CONTROL.test(character) || (WHITESPACE.test(character) && character !== " ") || FORMAT.test(character);
      if (unprintable) {
        return `name contains the unprintable character ${codePointName(character.codePointAt(0))} at position ${index + 1}; names may use printable characters and plain spaces`;
      }
    }
    if (WHITESPACE.test(characters[0]) || WHITESPACE.test(characters[characters.length - 1])) {
      return "name starts or ends with whitespace";
    }
    return null;
  }

  /** Why the service would refuse the message `text`, in its words, or null. */
  function messageProblem(text) {
    if (text === "") {
      return "message is empty";
    }
    const characters = [...text];
    if (characters.length > MAX_MESSAGE_CHARS) {
      return `message is ${characters.length} characters long, over the limit of ${MAX_MESSAGE_CHARS}`;
    }
    for (const [index, character] of characters.entries()) {
      if (CONTROL.test(character)) {
        return `message contains the control character ${codePointName(character.codePointAt(0))} at position ${index + 1}; control characters are not allowed`;
      }
    }
    if (characters.every((character) => WHITESPACE.test(character))) {
      return "message is only whitespace";
    }
    return null;
  }

  /** The delay before reconnection attempt `attempt` (0 for the first), with `jitter` from 0 to 1:
   *  between half and all of initial * 2^attempt, capped at the maximum, as session.rs's Backoff. */
  function backoffDelay(attempt, jitter) {
    const base = Math.min(BACKOFF_INITIAL_MS * 2 ** Math.min(attempt, 20), BACKOFF_MAX_MS);
    return base / 2 + (base * Math.min(Math.max(jitter, 0), 1)) / 2;
  }

  /** A fresh idempotency key: 128 random bits in hex, as the terminal client makes them. */
  function newKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  /** The body of an event's line as the terminal client prints it after its `[seq=.. lamport=.. me=..] `. */
  function eventBody(event) {
    if (event.kind === 1) {
      return `<${escaped(event.participant)}> ${escaped(event.text)}`;
    }
    return `*** ${escaped(event.text)}`;
  }

  return Object.freeze({
    MAX_MESSAGE_CHARS,
    MAX_NAME_CHARS,
    isUnsafeToShow,
    escaped,
    charCount,
    nameProblem,
    messageProblem,
    backoffDelay,
    newKey,
    eventBody,
  });
})();

// The engine and the view, in the page only.
if (typeof document !== "undefined") {
  (() => {
    const { Code, GrpcError } = ChittyCodec;
    const { MAX_MESSAGE_CHARS, escaped, charCount, nameProblem, messageProblem, backoffDelay, newKey, eventBody } =
      ChittyPage;

    /** How long a unary call may take before the page gives up on it, as the terminal client does. */
    const CALL_TIMEOUT_MS = 10000;
    /** How long a participant whose session ended keeps trying to join again while its name is taken. */
    const REJOIN_PATIENCE_MS = 30000;
    /** How long, after its Leave, the page waits for the events that came before it. */
    const DRAIN_AFTER_LEAVE_MS = 5000;
    /** How long the status says "resumed with N missed events" before it says "connected" again. */
    const RESUMED_NOTE_MS = 5000;
    /** How many typed messages may wait to be published. */
    const OUTBOX_LIMIT = 1000;
    /** The `target` of the page's log lines, where a Rust process names its module. */
    const LOG_TARGET = "chitty_web";

    const KIND_NAMES = { 1: "message", 2: "joined", 3: "left" };

    // ---------------------------------------------------------------------------------------------------
    // The log: JSON lines in the participant vocabulary of docs/logs.md.

    const logLines = [];

    /** One JSON value: BigInts as exact JSON numbers, which JSON.stringify cannot write. */
    function jsonValue(value) {
      return typeof value === "bigint" ? value.toString() : JSON.stringify(value);
    }

    /** Records one log line. Field order follows tracing's JSON lines: time, level, fields, target. */
    function log(level, event, fields) {
      const entries = [
        ["timestamp", new Date().toISOString()],
        ["level", level],
        ["component", state.name],
        ["event", event],
      ];
      for (const [name, value] of Object.entries(fields || {})) {
        if (value !== null && value !== undefined) {
          entries.push([name, value]);
        }
      }
      entries.push(["target", LOG_TARGET]);
      logLines.push(`{${entries.map(([name, value]) => `${JSON.stringify(name)}:${jsonValue(value)}`).join(",")}}`);
    }

    // ---------------------------------------------------------------------------------------------------
    // The engine's state. One object, changed only by the functions below, on the page's one thread.

    const state = {
      /** The name joined under (or being tried), the component of every log line. */
      name: "",
      /** The join secret typed, or empty. */
      joinSecret: "",
      /** The session token, once joined. */
      token: "",
      /** The page's Lamport clock. */
      clock: 0n,
      /** The seq of the last event shown; an event at or below it is never shown again. */
      lastSeq: 0n,
      /** "idle" before joining, "up" with the stream open, "down" waiting to reconnect, "left" at the end. */
      link: "idle",
      /** Counts streams; a stream's reader stops as soon as a newer one exists or the page dropped it. */
      generation: 0,
      /** The open stream's AbortController, to drop it. */
      streamAbort: null,
      /** Resolves when the open stream ends, while leaving. */
      streamEnded: null,
      /** Messages typed and not yet acknowledged, oldest first: `{ text, key }`. */
      outbox: [],
      /** Whether a Publish is in flight. */
      publishing: false,
      /** Whether publishing waits for the service's retry-after. */
      paused: false,
      /** When the link went down, and how many reconnection attempts failed since. */
      downSince: 0,
      attempt: 0,
      /** The pending reconnection timer, and when it fires. */
      retryTimer: null,
      retryAt: 0,
      /** Whether a reconnection attempt is in flight. */
      reconnecting: false,
      /** Who is present, and the seq that list is true as of. */
      present: new Set(),
      presentSeq: 0n,
      /** Whether the page is leaving: nothing new is published. */
      leaving: false,
    };

    // ---------------------------------------------------------------------------------------------------
    // The Lamport clock.

    /** The send rule: advance by one and return the time to stamp a request with. */
    function tick() {
      state.clock += 1n;
      view.clock();
      return state.clock;
    }

    /** The receive rule: max(clock, seen) + 1, returned. */
    function witness(seen) {
      state.clock = (seen > state.clock ? seen : state.clock) + 1n;
      view.clock();
      return state.clock;
    }

    /** Witnesses the service's time on an error, if it sent one; returns the clock after. */
    function witnessError(error) {
      const seen = error instanceof GrpcError ? error.number("lamport") : null;
      return seen === null ? state.clock : witness(seen);
    }

    // ---------------------------------------------------------------------------------------------------
    // Calls.

    function server() {
      return window.location.origin;
    }

    function authorization() {
      return state.token ? { authorization: `Bearer ${state.token}` } : {};
    }

    /** What kind of failure an error is, which decides what to do next (client.rs's ErrorKind). */
    function kindOf(error, rpc) {
      if (!(error instanceof GrpcError)) {
        return "other";
      }
      switch (error.code) {
        case Code.ALREADY_EXISTS:
          return "name_taken";
        case Code.INVALID_ARGUMENT:
          return "refused";
        case Code.UNAUTHENTICATED:
          return "session_ended";
        case Code.OUT_OF_RANGE:
          return "history_gone";
        case Code.RESOURCE_EXHAUSTED:
          return rpc === "Broadcast" ? "fell_behind" : rpc === "Publish" ? "rate_limited" : "full";
        case Code.ABORTED:
          return "replaced";
        case Code.UNAVAILABLE:
          // The service's own UNAVAILABLE carries its time; one made up for a broken connection does not.
          return !error.transport && error.metadata.has("lamport") ? "service_stopping" : "unreachable";
        case Code.DEADLINE_EXCEEDED:
        case Code.CANCELLED:
        case Code.UNKNOWN:
          return "unreachable";
        default:
          return "other";
      }
    }

    /** What an error says, in the service's words where it gave any. */
    function describe(error) {
      if (error instanceof GrpcError) {
        return error.transport ? `cannot reach the Chitty-Chat service at ${server()}: ${error.message}` : error.message;
      }
      return error && error.message ? error.message : String(error);
    }

    /** Calls a unary method with the session's token and a timeout; resolves to the response message. */
    async function unary(method, message, options) {
      const abort = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        abort.abort();
      }, CALL_TIMEOUT_MS);
      try {
        const answer = await ChittyCodec.call(method, message, authorization(), {
          signal: abort.signal,
          keepalive: Boolean(options && options.keepalive),
        });
        return answer.message;
      } catch (error) {
        if (timedOut) {
          throw new GrpcError(Code.UNAVAILABLE, `no answer within ${CALL_TIMEOUT_MS / 1000} s`, new Map(), true);
        }
        throw error;
      } finally {
        clearTimeout(timer);
      }
    }

    /** Joins under the name, keeping the token; `reason` is set when joining again. */
    async function join(reason) {
      const sent = tick();
      log("INFO", "join_sent", { lamport: sent, reason });
      let reply;
      try {
        reply = await unary("Join", { name: state.name, lamport: sent, join_secret: state.joinSecret });
      } catch (error) {
        witnessError(error);
        throw error;
      }
      const now = witness(reply.lamport);
      log("INFO", "join_ok", { seq: reply.seq, response_lamport: reply.lamport, lamport: now });
      state.token = reply.session_token;
      return reply;
    }

    /** Asks who is present. A service that cannot say leaves the list unknown (null); only a failure that
     *  also ends the connection or the session is thrown. */
    async function presence() {
      const sent = tick();
      log("INFO", "participants_sent", { lamport: sent });
      let reply;
      try {
        reply = await unary("Participants", { lamport: sent });
      } catch (error) {
        witnessError(error);
        const kind = kindOf(error, "Participants");
        if (kind === "unreachable" || kind === "service_stopping" || kind === "session_ended") {
          throw error;
        }
        log("WARN", "participants_failed", { reason: describe(error) });
        return null;
      }
      const now = witness(reply.lamport);
      log("INFO", "participants_ok", {
        present: reply.names.length,
        seq: reply.seq,
        response_lamport: reply.lamport,
        lamport: now,
      });
      return reply;
    }

    /** Opens the Broadcast stream after `afterSeq`: resolves to `{ events, abort }` once it is open. */
    async function openStream(afterSeq) {
      const sent = tick();
      log("INFO", "broadcast_open", { after_seq: afterSeq, lamport: sent });
      const abort = new AbortController();
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        abort.abort();
      }, CALL_TIMEOUT_MS);
      try {
        const events = await ChittyCodec.stream("Broadcast", { lamport: sent, after_seq: afterSeq }, authorization(), {
          signal: abort.signal,
        });
        return { events, abort };
      } catch (error) {
        const failure = timedOut
          ? new GrpcError(Code.UNAVAILABLE, `no answer within ${CALL_TIMEOUT_MS / 1000} s`, new Map(), true)
          : error;
        witnessError(failure);
        throw failure;
      } finally {
        clearTimeout(timer);
      }
    }

    // ---------------------------------------------------------------------------------------------------
    // The engine.

    /** Joins from the form: the first join is not retried, and a refusal is shown with its reason. */
    async function joinFromForm(name, joinSecret) {
      const problem = nameProblem(name);
      if (problem !== null) {
        view.joinError(problem);
        return;
      }
      view.joining(true);
      state.name = name;
      state.joinSecret = joinSecret;
      log("INFO", "connect", { server: server() });
      let joined;
      try {
        joined = await join(null);
      } catch (error) {
        view.joinError(describe(error));
        view.joining(false);
        return;
      }
      view.showChat();
      let opened;
      let present;
      try {
        present = await presence();
        opened = await openStream(0n);
      } catch (error) {
        // Joined, but the stream did not open: the session exists, so resume it like after any break.
        state.link = "up";
        lost(error, false);
        return;
      }
      log("INFO", "joined", { seq: joined.seq });
      if (present !== null) {
        setPresence(present);
      }
      view.status("connected");
      up(opened);
    }

    /** The stream is open: read it until it ends, and publish what waits. */
    function up(opened) {
      state.link = "up";
      state.attempt = 0;
      state.generation += 1;
      const generation = state.generation;
      state.streamAbort = opened.abort;
      let endStream;
      state.streamEnded = new Promise((resolve) => {
        endStream = resolve;
      });
      (async () => {
        let ending = null;
        try {
          for (;;) {
            const step = await opened.events.next();
            if (generation !== state.generation) {
              return;
            }
            if (step.done) {
              break;
            }
            receive(step.value);
          }
        } catch (error) {
          if (generation !== state.generation) {
            return;
          }
          ending = error;
        } finally {
          endStream(ending);
        }
        if (state.leaving) {
          // leave() waits for this end and logs it.
          return;
        }
        if (ending === null) {
          lost(new GrpcError(Code.UNAVAILABLE, "the service ended the Broadcast stream", new Map(), true), false);
          return;
        }
        witnessError(ending);
        const kind = kindOf(ending, "Broadcast");
        if (kind === "replaced") {
          // Another tab or process opened this session's stream: this page's part is over.
          log("WARN", "broadcast_end", { reason: describe(ending) });
          dropStream();
          state.link = "left";
          view.status("disconnected");
          view.feedback(`the chat goes on elsewhere: ${describe(ending)}`, true);
          view.ended();
          return;
        }
        // Cut off for reading too slowly: reopen at once, after the last seq shown.
        lost(ending, kind === "fell_behind");
      })();
      pump();
    }

    /** Shows an event, unless it was shown already. Events of a kind this page does not know are skipped,
     *  as the terminal client skips them: a newer service may send them. */
    function receive(event) {
      const kind = KIND_NAMES[event.kind];
      if (kind === undefined) {
        return;
      }
      const now = witness(event.lamport);
      if (event.seq <= state.lastSeq) {
        return;
      }
      state.lastSeq = event.seq;
      log("INFO", "receive", {
        seq: event.seq,
        kind,
        participant: event.participant,
        event_lamport: event.lamport,
        lamport: now,
        text: event.text,
      });
      if (event.seq > state.presentSeq) {
        if (kind === "joined") {
          state.present.add(event.participant);
        } else if (kind === "left") {
          state.present.delete(event.participant);
        }
        view.participants();
      }
      view.event(event, kind, now);
    }

    function setPresence(reply) {
      state.present = new Set(reply.names);
      state.presentSeq = reply.seq;
      view.participants();
    }

    /** Drops the open stream: its reader stops, and the connection closes. */
    function dropStream() {
      state.generation += 1;
      if (state.streamAbort !== null) {
        state.streamAbort.abort();
        state.streamAbort = null;
      }
    }

    /** The link broke for `reason`: schedule a reconnection, at once or after a backoff. */
    function lost(reason, atOnce) {
      if (state.link === "left") {
        return;
      }
      if (state.link === "up") {
        log("WARN", "disconnected", { reason: describe(reason), last_seq: state.lastSeq });
        dropStream();
        state.downSince = Date.now();
        state.attempt = 0;
        if (!atOnce) {
          view.feedback(`connection lost: ${describe(reason)}; reconnecting`, true);
        }
      } else {
        state.attempt += 1;
      }
      state.link = "down";
      const delay = atOnce ? 0 : backoffDelay(state.attempt, Math.random());
      state.retryAt = Date.now() + delay;
      clearTimeout(state.retryTimer);
      state.retryTimer = setTimeout(reconnectAttempt, delay);
      view.countdown();
    }

    /** One reconnection attempt: resume after the last seq shown, or join again, or skip what is gone. */
    async function reconnectAttempt() {
      state.retryTimer = null;
      if (state.link !== "down" || state.reconnecting) {
        return;
      }
      state.reconnecting = true;
      const afterSeq = state.lastSeq;
      log("INFO", "reconnect_attempt", { server: server(), after_seq: afterSeq });
      let result;
      try {
        result = await resume(afterSeq);
      } catch (error) {
        state.reconnecting = false;
        if (state.link === "left") {
          return;
        }
        log("INFO", "reconnect_failed", { reason: describe(error) });
        const kind = kindOf(error, "Join");
        // Joining again meets a taken name while this participant's own ended session still holds it.
        if ((kind === "name_taken" && Date.now() - state.downSince >= REJOIN_PATIENCE_MS) || kind === "replaced") {
          state.link = "left";
          view.status("disconnected");
          view.feedback(`the chat ended for this page: ${describe(error)}`, true);
          view.ended();
          return;
        }
        lost(error, false);
        return;
      }
      state.reconnecting = false;
      if (state.link === "left") {
        result.opened.abort.abort();
        return;
      }
      const resumption = result.resumption;
      if (resumption.how === "skipped") {
        state.lastSeq = resumption.last;
      }
      log("INFO", "reconnected", { server: server(), after_seq: state.lastSeq });
      if (result.present !== null) {
        setPresence(result.present);
      }
      if (resumption.how === "resumed") {
        if (resumption.missed === null) {
          view.status("connected");
        } else {
          view.status(`resumed with ${resumption.missed} missed events`);
          view.statusLater("connected", RESUMED_NOTE_MS);
        }
        view.feedback(`reconnected; resuming after seq ${resumption.afterSeq}`, false);
      } else if (resumption.how === "rejoined") {
        view.status("connected");
        view.feedback(
          `the session ended while disconnected; joined again at seq ${resumption.joinSeq}; events after seq ${resumption.afterSeq} before that are not shown`,
          true,
        );
      } else {
        view.status("connected");
        view.feedback(
          `the service no longer holds events ${resumption.firstMissing} to ${resumption.last}; carrying on from the present`,
          true,
        );
      }
      up(result.opened);
    }

    /** Picks the session up after `afterSeq`, as session.rs's `reconnect`. */
    async function resume(afterSeq) {
      let present;
      try {
        present = await presence();
      } catch (error) {
        if (kindOf(error, "Participants") === "session_ended") {
          return rejoin(afterSeq);
        }
        throw error;
      }
      try {
        const opened = await openStream(afterSeq);
        const missed = present === null ? null : present.seq > afterSeq ? present.seq - afterSeq : 0n;
        return { opened, present, resumption: { how: "resumed", afterSeq, missed } };
      } catch (error) {
        const kind = kindOf(error, "Broadcast");
        if (kind === "session_ended") {
          return rejoin(afterSeq);
        }
        if (kind === "history_gone") {
          const last = error.number("last-seq") ?? afterSeq;
          const opened = await openStream(last);
          return { opened, present, resumption: { how: "skipped", firstMissing: afterSeq + 1n, last } };
        }
        throw error;
      }
    }

    /** Joins again after the session ended, then opens the stream from the new join. */
    async function rejoin(afterSeq) {
      const reply = await join("the session ended");
      const present = await presence();
      const opened = await openStream(0n);
      return { opened, present, resumption: { how: "rejoined", joinSeq: reply.seq, afterSeq } };
    }

    /** Publishes the front of the outbox, if the link is up and nothing else is in flight. */
    function pump() {
      if (state.link !== "up" || state.publishing || state.paused || state.leaving || state.outbox.length === 0) {
        return;
      }
      const outgoing = state.outbox[0];
      state.publishing = true;
      const sent = tick();
      log("INFO", "publish_sent", { lamport: sent, chars: charCount(outgoing.text) });
      unary("Publish", { text: outgoing.text, lamport: sent, idempotency_key: outgoing.key }).then(
        (reply) => {
          state.publishing = false;
          const now = witness(reply.lamport);
          log("INFO", "publish_ok", { seq: reply.seq, response_lamport: reply.lamport, lamport: now });
          state.outbox.shift();
          view.pending();
          pump();
        },
        (error) => {
          state.publishing = false;
          const now = witnessError(error);
          const kind = kindOf(error, "Publish");
          if (kind === "unreachable" || kind === "service_stopping" || kind === "session_ended") {
            // Kept in the outbox, and sent again with the same key once reconnected.
            if (state.link === "up") {
              lost(error, false);
            }
            return;
          }
          if (kind === "rate_limited") {
            const wait = error.number("retry-after-ms");
            const delay = wait === null ? 100 : Number(wait);
            log("INFO", "publish_throttled", { reason: describe(error), retry_after_ms: delay, lamport: now });
            view.feedback(`sending too fast; the service asked to wait ${delay} ms`, false);
            state.paused = true;
            setTimeout(() => {
              state.paused = false;
              pump();
            }, delay);
            return;
          }
          log("INFO", "publish_refused", {
            reason: describe(error),
            response_lamport: error instanceof GrpcError ? error.number("lamport") : null,
            lamport: now,
          });
          state.outbox.shift();
          view.pending();
          view.feedback(`not sent: ${describe(error)}`, true);
          pump();
        },
      );
    }

    /** Takes a typed message into the outbox; returns why not, or null. */
    function submit(text) {
      const problem = messageProblem(text);
      if (problem !== null) {
        return problem;
      }
      if (state.outbox.length >= OUTBOX_LIMIT) {
        return "too many messages are waiting to be sent; try again in a moment";
      }
      state.outbox.push({ text, key: newKey() });
      view.pending();
      pump();
      return null;
    }

    /** Leaves and waits for the events before the leave, as session.rs's `leave`. Resolves when done. */
    async function leave() {
      if (state.link === "idle" || state.link === "left" || state.leaving) {
        return;
      }
      state.leaving = true;
      clearTimeout(state.retryTimer);
      if (state.outbox.length > 0) {
        view.feedback(`${state.outbox.length} typed message(s) were not sent`, true);
      }
      if (state.link !== "up") {
        state.link = "left";
        view.feedback("left without telling the service, which is unreachable", true);
        view.status("disconnected");
        view.ended();
        return;
      }
      const sent = tick();
      log("INFO", "leave_sent", { lamport: sent });
      let reply;
      try {
        reply = await unary("Leave", { lamport: sent });
      } catch (error) {
        witnessError(error);
        log("WARN", "leave_failed", { reason: describe(error) });
        view.feedback(`could not leave cleanly: ${describe(error)}`, true);
        dropStream();
        state.link = "left";
        view.status("disconnected");
        view.ended();
        return;
      }
      const now = witness(reply.lamport);
      log("INFO", "leave_ok", { seq: reply.seq, response_lamport: reply.lamport, lamport: now });
      // The service ends the stream cleanly once the events before the leave are delivered.
      let timer;
      const drained = await Promise.race([
        state.streamEnded.then((ending) => ({ ending })),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(null), DRAIN_AFTER_LEAVE_MS);
        }),
      ]);
      clearTimeout(timer);
      if (drained === null) {
        log("WARN", "broadcast_end", { reason: "the stream did not end after the leave; closing it" });
      } else if (drained.ending === null) {
        log("INFO", "broadcast_end", { reason: "left" });
      } else {
        witnessError(drained.ending);
        log("WARN", "broadcast_end", { reason: describe(drained.ending) });
      }
      dropStream();
      state.link = "left";
      view.status("disconnected");
      view.feedback("you left the chat", false);
      view.ended();
    }

    /** The tab is closing: send the Leave with keepalive, which the browser delivers after the page is gone. */
    function leaveOnClose() {
      if (state.link !== "up" || state.leaving) {
        return;
      }
      state.leaving = true;
      const sent = tick();
      log("INFO", "leave_sent", { lamport: sent });
      ChittyCodec.call("Leave", { lamport: sent }, authorization(), { keepalive: true }).then(
        (answer) => {
          const now = witness(answer.message.lamport);
          log("INFO", "leave_ok", { seq: answer.message.seq, response_lamport: answer.message.lamport, lamport: now });
        },
        (error) => {
          witnessError(error);
          log("WARN", "leave_failed", { reason: describe(error) });
        },
      );
      state.link = "left";
    }

    // ---------------------------------------------------------------------------------------------------
    // The view: the only code that touches the DOM. Data is set with textContent, never as HTML.

    const element = (id) => document.getElementById(id);

    const view = {
      statusTimer: null,
      countdownTimer: null,

      clock() {
        element("clock").textContent = state.clock.toString();
      },

      status(text) {
        clearTimeout(this.statusTimer);
        clearInterval(this.countdownTimer);
        const status = element("status");
        status.textContent = text;
        status.dataset.state = text.split(" ")[0];
      },

      /** Says `text` after `delay` ms, unless the status changed meanwhile. */
      statusLater(text, delay) {
        const shown = element("status").textContent;
        this.statusTimer = setTimeout(() => {
          if (element("status").textContent === shown) {
            this.status(text);
          }
        }, delay);
      },

      /** "reconnecting in N s", counting down to the next attempt. */
      countdown() {
        const show = () => {
          const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
          const status = element("status");
          status.textContent = `reconnecting in ${seconds} s`;
          status.dataset.state = "reconnecting";
        };
        this.status("reconnecting");
        show();
        this.countdownTimer = setInterval(show, 250);
      },

      joinError(text) {
        element("join-error").textContent = text;
      },

      joining(busy) {
        element("join-button").disabled = busy;
        element("name").disabled = busy;
        element("join-secret").disabled = busy;
        if (busy) {
          this.joinError("");
        }
      },

      showChat() {
        element("join-view").hidden = true;
        element("chat").hidden = false;
        element("me").textContent = `you are ${escaped(state.name)}`;
        element("text").focus();
      },

      event(event, kind, me) {
        const list = element("messages");
        const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 48;
        const item = document.createElement("li");
        item.className = `event ${kind}`;
        if (kind === "message" && event.participant === state.name) {
          item.classList.add("mine");
        }
        item.dataset.seq = event.seq.toString();
        item.dataset.lamport = event.lamport.toString();
        item.dataset.me = me.toString();
        item.dataset.kind = kind;
        item.title = `seq ${event.seq} · event at Lamport ${event.lamport} · this page at ${me} after receiving it`;
        item.textContent = eventBody(event);
        list.appendChild(item);
        if (nearBottom) {
          list.scrollTop = list.scrollHeight;
        }
      },

      participants() {
        const list = element("participants");
        const names = [...state.present].sort();
        list.replaceChildren(
          ...names.map((name) => {
            const item = document.createElement("li");
            item.textContent = escaped(name);
            if (name === state.name) {
              item.classList.add("me");
            }
            return item;
          }),
        );
        element("present-count").textContent = String(names.length);
      },

      pending() {
        const waiting = state.outbox.length;
        element("send").textContent = waiting > 0 ? `Send (${waiting} waiting)` : "Send";
      },

      feedback(text, isError) {
        const feedback = element("feedback");
        feedback.textContent = text;
        feedback.classList.toggle("error", Boolean(isError));
      },

      /** The counter and the Send button follow what is typed. */
      counter() {
        const count = charCount(element("text").value);
        const counter = element("counter");
        counter.textContent = `${count}/${MAX_MESSAGE_CHARS}`;
        counter.classList.toggle("over", count > MAX_MESSAGE_CHARS);
        element("send").disabled = count === 0 || count > MAX_MESSAGE_CHARS || state.link === "left";
      },

      ended() {
        element("text").disabled = true;
        element("send").disabled = true;
        element("leave").disabled = true;
      },
    };

    // ---------------------------------------------------------------------------------------------------
    // Wiring.

    function start() {
      element("join-form").addEventListener("submit", (event) => {
        event.preventDefault();
        if (state.link !== "idle") {
          return;
        }
        joinFromForm(element("name").value, element("join-secret").value);
      });
      element("text").addEventListener("input", () => view.counter());
      element("compose").addEventListener("submit", (event) => {
        event.preventDefault();
        const input = element("text");
        if (state.link === "left" || state.leaving || charCount(input.value) > MAX_MESSAGE_CHARS) {
          return;
        }
        const problem = submit(input.value);
        if (problem === null) {
          input.value = "";
          view.feedback("", false);
        } else {
          view.feedback(`not sent: ${problem}`, true);
        }
        view.counter();
      });
      element("leave").addEventListener("click", () => {
        leave();
      });
      element("download-log").addEventListener("click", (event) => {
        const link = event.currentTarget;
        const blob = new Blob(logLines.map((line) => `${line}\n`), { type: "application/x-ndjson" });
        if (link.href.startsWith("blob:")) {
          URL.revokeObjectURL(link.href);
        }
        link.href = URL.createObjectURL(blob);
        link.download = `${state.name || "chitty"}.log`;
      });
      window.addEventListener("pagehide", leaveOnClose);
      // A stream over a connection that died silently may never end by itself: when the browser says it
      // went offline, the link is down; when it is back online, the next attempt is due at once.
      window.addEventListener("offline", () => {
        if (state.link === "up" && !state.leaving) {
          lost(new GrpcError(Code.UNAVAILABLE, "the browser went offline", new Map(), true), false);
        }
      });
      window.addEventListener("online", () => {
        if (state.link === "down" && !state.reconnecting) {
          clearTimeout(state.retryTimer);
          state.retryAt = Date.now();
          state.retryTimer = setTimeout(reconnectAttempt, 0);
        }
      });
      // A page brought back from the back-forward cache has left already (on pagehide): say so.
      window.addEventListener("pageshow", (event) => {
        if (event.persisted && state.link === "left") {
          view.status("disconnected");
          view.feedback("this page left the chat when it was hidden; reload it to join again", true);
          view.ended();
        }
      });
      view.clock();
      view.counter();
    }

    /** The page's log so far: one JSON line per string, in the participant vocabulary of docs/logs.md. */
    window.chittyLog = () => logLines.slice();
    /** Leaves as closing the tab does, but awaited: resolves once the Leave is answered and the stream drained. */
    window.chittyLeave = () => leave();

    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", start);
    } else {
      start();
    }
  })();
}

if (typeof module !== "undefined") {
  module.exports = ChittyPage;
}
