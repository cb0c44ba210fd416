//! The codec behind every generated Chitty-Chat method.
//!
//! tonic-prost's `ProstCodec` answers every protobuf decode error with `INTERNAL`. That is right when a
//! client fails to decode a response (the server sent something broken) and wrong when the server fails to
//! decode a request: a participant that sends a `text` field holding invalid UTF-8 made a mistake of its
//! own, and the gRPC status code guide calls that `INVALID_ARGUMENT`.
//!
//! So whose fault a decode error is depends on who sent the message, and each message type says so through
//! [`DecodeFault`]. Encoding is tonic-prost's, unchanged.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder as TonicDecoder};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;

use crate::v1;

/// Whose mistake it is when a message of this type fails to decode, as the status code to answer with.
pub trait DecodeFault {
    /// The code of the status returned when a message of this type cannot be decoded.
    const CODE: Code;
}

macro_rules! decode_fault {
    ($code:expr => $($message:ty),+ $(,)?) => {
        $(impl DecodeFault for $message { const CODE: Code = $code; })+
    };
}

// Requests come from participants: a broken one is the caller's mistake.
decode_fault!(Code::InvalidArgument =>
    v1::JoinRequest, v1::BroadcastRequest, v1::PublishRequest, v1::LeaveRequest,
    v1::ParticipantsRequest);
// Responses and events come from the service: a broken one is the service's fault.
decode_fault!(Code::Internal =>
    v1::JoinResponse, v1::Event, v1::PublishResponse, v1::LeaveResponse,
    v1::ParticipantsResponse);

/// A gRPC codec encoding `T` and decoding `U` with prost.
#[derive(Debug)]
pub struct Codec<T, U> {
    _types: PhantomData<fn(T) -> U>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + DecodeFault + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder { _type: PhantomData }
    }
}

/// Decodes a `U`, answering a decode error with `U`'s [`DecodeFault::CODE`].
#[derive(Debug)]
pub struct Decoder<U> {
    _type: PhantomData<fn() -> U>,
}

impl<U> TonicDecoder for Decoder<U>
where
    U: Message + Default + DecodeFault,
{
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode::<U>(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// The fields of a `chittychat.v1.Event`, borrowed: what [`encode_event`] writes.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// Field 1, `seq`.
    pub seq: u64,
    /// Field 2, `lamport`.
    pub lamport: u64,
    /// Field 3, `kind`, as the enum's number.
    pub kind: i32,
    /// Field 4, `participant`.
    pub participant: &'a str,
    /// Field 5, `text`.
    pub text: &'a str,
}

impl EventFields<'_> {
    /// How many bytes [`encode_event`] writes for these fields: prost's `encoded_len` of the equivalent
    /// [`v1::Event`], so that a gRPC message's length prefix can be written before its event.
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::{encoded_len_varint, int32, key_len, uint64};
        let mut len = 0;
        if self.seq != 0 {
            len += uint64::encoded_len(1, &self.seq);
        }
        if self.lamport != 0 {
            len += uint64::encoded_len(2, &self.lamport);
        }
        if self.kind != 0 {
            len += int32::encoded_len(3, &self.kind);
        }
        for (tag, text) in [(4, self.participant), (5, self.text)] {
            if !text.is_empty() {
                len += key_len(tag) + encoded_len_varint(text.len() as u64) + text.len();
            }
        }
        len
    }
}

/// Writes an `Event` in protobuf straight from borrowed fields, byte for byte what prost writes for the
/// equivalent [`v1::Event`], without building one: a service that sends the same event to many streams
/// need not copy its strings for each.
pub fn encode_event(event: EventFields<'_>, buf: &mut impl prost::bytes::BufMut) {
    use prost::encoding::{WireType, encode_key, encode_varint, int32, uint64};
    // Proto3 leaves fields at their default value out, in field order, as prost does.
    if event.seq != 0 {
        uint64::encode(1, &event.seq, buf);
    }
    if event.lamport != 0 {
        uint64::encode(2, &event.lamport, buf);
    }
    if event.kind != 0 {
        int32::encode(3, &event.kind, buf);
    }
    for (tag, text) in [(4, event.participant), (5, event.text)] {
        if !text.is_empty() {
            encode_key(tag, WireType::LengthDelimited, buf);
            encode_varint(text.len() as u64, buf);
            buf.put_slice(text.as_bytes());
        }
    }
}

/// Decodes a `U`, answering a decode error with `U`'s [`DecodeFault::CODE`].
fn decode<U: Message + Default + DecodeFault>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    U::decode(buf).map_err(|error| {
        Status::new(
            U::CODE,
            format!("the message could not be decoded as protobuf: {error}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_blame_the_caller_and_responses_blame_the_service() {
        assert_eq!(
            <v1::PublishRequest as DecodeFault>::CODE,
            Code::InvalidArgument
        );
        assert_eq!(
            <v1::JoinRequest as DecodeFault>::CODE,
            Code::InvalidArgument
        );
        assert_eq!(<v1::Event as DecodeFault>::CODE, Code::Internal);
        assert_eq!(<v1::JoinResponse as DecodeFault>::CODE, Code::Internal);
    }

    proptest! {
        /// Whatever bytes a client sends, decoding a request never panics, and a failure is always the
        /// client's mistake.
        #[test]
        fn any_bytes_decode_to_a_request_or_invalid_argument(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            fn check<U: Message + Default + DecodeFault>(bytes: &[u8]) -> Result<(), TestCaseError> {
                if let Err(status) = decode::<U>(bytes) {
                    prop_assert_eq!(status.code(), Code::InvalidArgument);
                    prop_assert!(status.message().starts_with("the message could not be decoded"));
                }
                Ok(())
            }
            check::<v1::JoinRequest>(&bytes)?;
            check::<v1::PublishRequest>(&bytes)?;
            check::<v1::BroadcastRequest>(&bytes)?;
            check::<v1::LeaveRequest>(&bytes)?;
        }

        /// Writing an event from borrowed fields gives exactly prost's bytes, of the length it announces.
        #[test]
        fn borrowed_events_encode_like_prost(
            seq in any::<u64>(), lamport in any::<u64>(), kind in -1i32..5,
            participant in ".{0,40}", text in ".{0,140}",
        ) {
            let message = v1::Event { seq, lamport, kind, participant: participant.clone(), text: text.clone() };
            let fields = EventFields { seq, lamport, kind, participant: &participant, text: &text };
            let mut written = Vec::new();
            encode_event(fields, &mut written);
            prop_assert_eq!(fields.encoded_len(), written.len());
            prop_assert_eq!(fields.encoded_len(), message.encoded_len());
            prop_assert_eq!(written, message.encode_to_vec());
        }

        /// A valid request survives the round trip through the codec unchanged.
        #[test]
        fn valid_requests_round_trip(text in ".{0,130}", lamport in any::<u64>(), key in "[a-f0-9]{0,32}") {
            let request = v1::PublishRequest { text, lamport, idempotency_key: key };
            let decoded = decode::<v1::PublishRequest>(request.encode_to_vec().as_slice());
            prop_assert_eq!(decoded.ok(), Some(request));
        }
    }

    #[test]
    fn invalid_utf8_in_a_string_field_is_a_decode_error_that_names_the_field() {
        // Field 1 (text), wire type 2 (length-delimited), 2 bytes: 0xff 0xfe, which is not UTF-8.
        let bytes = [0x0a, 0x02, 0xff, 0xfe];
        let error = <v1::PublishRequest as Message>::decode(&bytes[..])
            .expect_err("invalid UTF-8 must not decode");
        let text = error.to_string();
        assert!(
            text.contains("PublishRequest.text") && text.contains("UTF-8"),
            "got {text:?}, want a message naming the field and UTF-8"
        );
    }
}
