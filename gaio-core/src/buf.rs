//! Buffer traits: what can be moved into a request, and how a completion
//! hands it back.
//!
//! A buffer is an owned value moved into the watcher on submission and moved
//! back in the completion, so a steady loop re-uses the same memory and
//! allocates nothing. The watcher only touches the bytes while it owns the
//! value; no `unsafe` is needed to implement these traits.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

/// A buffer whose bytes can be written to a connection.
///
/// `as_bytes` must return the same bytes every time it is called while the
/// watcher owns the buffer: a write sends all of them, resuming where it left
/// off after a partial write.
pub trait IoBuf: Send + 'static {
    /// The bytes of the buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::IoBuf;
    ///
    /// // A protocol's response type, written without a copy.
    /// struct Response {
    ///     encoded: Vec<u8>,
    /// }
    ///
    /// impl IoBuf for Response {
    ///     fn as_bytes(&self) -> &[u8] {
    ///         &self.encoded
    ///     }
    /// }
    ///
    /// assert_eq!(IoBuf::as_bytes(&String::from("+OK\r\n")), b"+OK\r\n");
    /// ```
    fn as_bytes(&self) -> &[u8];
}

/// A buffer that reads can fill.
///
/// Reads fill `as_bytes_mut()` from its start: the completion's `bytes`
/// tells how much was filled. For a `Vec<u8>` that is its *length*, not its
/// capacity: allocate with `vec![0; n]`.
pub trait IoBufMut: IoBuf {
    /// The region a read fills.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::IoBufMut;
    ///
    /// let mut buf = vec![0u8; 16];
    /// assert_eq!(buf.as_bytes_mut().len(), 16); // its length, not its capacity
    /// ```
    fn as_bytes_mut(&mut self) -> &mut [u8];
}

/// A growable buffer that reads can append to: a
/// [`read_append`](crate::Submit::read_append) fills its spare capacity
/// (what lies between its length and its capacity) and extends its length
/// by the bytes read. The watcher never grows it: reserve room before
/// submitting. Implemented for `Vec<u8>` and `BytesMut`.
///
/// A server reading a request that may arrive in pieces keeps one such
/// buffer per connection and appends to it until the request is whole,
/// with no copy and no second "pending" buffer.
pub trait IoBufAppend: IoBuf {
    /// The spare capacity a read may fill.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::IoBufAppend;
    ///
    /// let mut buf: Vec<u8> = Vec::with_capacity(64);
    /// buf.extend_from_slice(b"GET ");
    /// assert_eq!(buf.spare_capacity().len(), buf.capacity() - 4);
    /// ```
    fn spare_capacity(&mut self) -> &mut [MaybeUninit<u8>];

    /// Extends the length over the first `n` bytes of the spare capacity.
    ///
    /// # Safety
    ///
    /// The first `n` bytes of [`spare_capacity`](IoBufAppend::spare_capacity)
    /// have been initialised, and `n` is at most its length.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::IoBufAppend;
    ///
    /// let mut buf: Vec<u8> = Vec::with_capacity(8);
    /// buf.extend_from_slice(b"ab");
    /// buf.spare_capacity()[0].write(b'c');
    /// // SAFETY: the first byte of the spare capacity was just written.
    /// unsafe { buf.extend_filled(1) };
    /// assert_eq!(buf, b"abc");
    /// ```
    unsafe fn extend_filled(&mut self, n: usize);
}

impl IoBufAppend for Vec<u8> {
    fn spare_capacity(&mut self) -> &mut [MaybeUninit<u8>] {
        self.spare_capacity_mut()
    }

    unsafe fn extend_filled(&mut self, n: usize) {
        // SAFETY: the caller initialised the first `n` bytes after the
        // length, within the capacity.
        unsafe { self.set_len(self.len() + n) }
    }
}

impl IoBufAppend for BytesMut {
    fn spare_capacity(&mut self) -> &mut [MaybeUninit<u8>] {
        self.spare_capacity_mut()
    }

    unsafe fn extend_filled(&mut self, n: usize) {
        // SAFETY: the caller initialised the first `n` bytes after the
        // length, within the capacity.
        unsafe { self.set_len(self.len() + n) }
    }
}

impl IoBuf for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}
impl IoBufMut for Vec<u8> {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl IoBuf for Box<[u8]> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}
impl IoBufMut for Box<[u8]> {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl<const N: usize> IoBuf for [u8; N] {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}
impl<const N: usize> IoBufMut for [u8; N] {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl IoBuf for BytesMut {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}
impl IoBufMut for BytesMut {
    fn as_bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

impl IoBuf for Bytes {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl IoBuf for &'static [u8] {
    fn as_bytes(&self) -> &[u8] {
        self
    }
}

impl IoBuf for &'static str {
    fn as_bytes(&self) -> &[u8] {
        str::as_bytes(self)
    }
}

impl IoBuf for String {
    fn as_bytes(&self) -> &[u8] {
        String::as_bytes(self)
    }
}

/// The buffer a completion hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buffer<B> {
    /// The buffer the request carried, moved back to its owner.
    User(B),
    /// For a read without a buffer: a reference-counted slice of the
    /// watcher's swap memory holding exactly the bytes read. It stays valid
    /// as long as it is held and can be passed straight to a write (with a
    /// watcher whose buffer type is [`Bytes`]) without a copy. Holding it
    /// keeps its whole swap slab alive, so copy out data kept for long.
    Swap(Bytes),
    /// The request carried no buffer (accept, connect, shutdown, detach).
    None,
}

impl<B> Buffer<B> {
    /// The user's buffer, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Buffer;
    ///
    /// let back: Buffer<Vec<u8>> = Buffer::User(vec![0; 4096]);
    /// let buf = back.into_user().unwrap(); // reuse it for the next read
    /// assert_eq!(buf.len(), 4096);
    /// ```
    pub fn into_user(self) -> Option<B> {
        match self {
            Buffer::User(b) => Some(b),
            Buffer::Swap(_) | Buffer::None => None,
        }
    }

    /// The swap slice, if this is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{Buffer, Bytes};
    ///
    /// let read: Buffer<Vec<u8>> = Buffer::Swap(Bytes::from_static(b"PING\r\n"));
    /// assert_eq!(read.into_swap().as_deref(), Some(&b"PING\r\n"[..]));
    /// ```
    pub fn into_swap(self) -> Option<Bytes> {
        match self {
            Buffer::User(_) | Buffer::None => None,
            Buffer::Swap(b) => Some(b),
        }
    }
}

impl<B: IoBuf> Buffer<B> {
    /// All bytes of the buffer (for a swap slice: the bytes read).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::Buffer;
    ///
    /// assert_eq!(Buffer::User(b"hello".to_vec()).as_bytes(), b"hello");
    /// assert!(Buffer::<Vec<u8>>::None.as_bytes().is_empty());
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Buffer::User(b) => b.as_bytes(),
            Buffer::Swap(b) => b,
            Buffer::None => &[],
        }
    }
}
