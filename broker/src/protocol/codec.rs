//! Length-prefixed framing. Unlike `LengthDelimitedCodec`, the decoder reserves nothing for a
//! claimed length: the buffer grows only as bytes really arrive, so a peer that announces
//! 100 MiB and sends 10 bytes costs 10 bytes.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::ProtocolError;

/// The smallest request: api key, api version, correlation id.
const MIN_FRAME: usize = 8;

#[derive(Debug, Clone)]
pub struct FrameCodec {
    max_frame: usize,
    min_frame: usize,
}

impl FrameCodec {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            min_frame: MIN_FRAME,
        }
    }

    /// Takes frames of any length (a raw SASL token after SaslHandshake v0 is not a request),
    /// or (`false`) only those long enough for a request header again.
    pub fn accept_short_frames(&mut self, yes: bool) {
        self.min_frame = if yes { 0 } else { MIN_FRAME };
    }

    /// Changes the limit for the frames still to come (raised once a connection has
    /// authenticated).
    pub fn set_max_frame(&mut self, max_frame: usize) {
        self.max_frame = max_frame;
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let length = i32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if length < 0 {
            return Err(ProtocolError::NegativeLength { length });
        }
        let length = length as usize;
        if length > self.max_frame {
            return Err(ProtocolError::FrameTooLarge {
                length,
                max: self.max_frame,
            });
        }
        if length < self.min_frame {
            return Err(ProtocolError::FrameTooShort { length });
        }
        if src.len() < 4 + length {
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(length)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&(body.len() as i32).to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn splits_frames_and_waits_for_partial_ones() {
        let mut c = FrameCodec::new(1024);
        let mut buf = framed(&[1; 8]);
        buf.extend_from_slice(&framed(&[2; 10])[..7]);
        assert_eq!(c.decode(&mut buf).expect("ok").map(|f| f.len()), Some(8));
        assert_eq!(c.decode(&mut buf).expect("ok"), None);
        buf.extend_from_slice(&[2; 7]);
        assert_eq!(c.decode(&mut buf).expect("ok").map(|f| f.len()), Some(10));
    }

    #[test]
    fn a_lying_length_reserves_nothing() {
        let mut c = FrameCodec::new(100 << 20);
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&(100i32 << 20).to_be_bytes());
        buf.extend_from_slice(&[0; 6]);
        assert_eq!(c.decode(&mut buf).expect("ok"), None);
        assert!(buf.capacity() < 1024, "capacity {} grew", buf.capacity());
    }

    #[test]
    fn rejects_negative_oversize_and_short() {
        let mut c = FrameCodec::new(1024);
        let mut neg = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert!(matches!(
            c.decode(&mut neg),
            Err(ProtocolError::NegativeLength { .. })
        ));
        let mut big = BytesMut::from(&2000i32.to_be_bytes()[..]);
        assert!(matches!(
            c.decode(&mut big),
            Err(ProtocolError::FrameTooLarge { .. })
        ));
        let mut short = framed(&[0; 3]);
        assert!(matches!(
            c.decode(&mut short),
            Err(ProtocolError::FrameTooShort { .. })
        ));
    }
}
