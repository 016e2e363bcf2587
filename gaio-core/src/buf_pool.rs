//! `BufPool`: output buffers reused across requests, so a server that
//! builds responses allocates only while its traffic grows.

use std::fmt;

use crate::{BytesMut, IoBuf};

/// A buffer a [`BufPool`] can hand out again: cleared, its memory kept.
pub trait PoolBuf: IoBuf {
    /// An empty buffer with room for at least `capacity` bytes.
    ///
    /// # Panics
    ///
    /// For `Vec<u8>` and `BytesMut`, if `capacity` exceeds `isize::MAX`
    /// bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::PoolBuf;
    ///
    /// let buf = <Vec<u8> as PoolBuf>::with_capacity(1024);
    /// assert!(buf.is_empty() && buf.capacity() >= 1024);
    /// ```
    fn with_capacity(capacity: usize) -> Self;
    /// The bytes it can hold without growing.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{BytesMut, PoolBuf};
    ///
    /// let buf = BytesMut::with_capacity(512);
    /// assert!(PoolBuf::capacity(&buf) >= 512);
    /// ```
    fn capacity(&self) -> usize;
    /// Empties it, keeping its memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::PoolBuf;
    ///
    /// let mut buf = b"HTTP/1.1 200 OK\r\n".to_vec();
    /// let room = buf.capacity();
    /// PoolBuf::clear(&mut buf);
    /// assert!(buf.is_empty() && buf.capacity() == room);
    /// ```
    fn clear(&mut self);
}

impl PoolBuf for Vec<u8> {
    fn with_capacity(capacity: usize) -> Self {
        Vec::with_capacity(capacity)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
}

impl PoolBuf for BytesMut {
    fn with_capacity(capacity: usize) -> Self {
        BytesMut::with_capacity(capacity)
    }
    fn capacity(&self) -> usize {
        BytesMut::capacity(self)
    }
    fn clear(&mut self) {
        BytesMut::clear(self)
    }
}

/// A pool of empty buffers: [`take`](BufPool::take) one, fill it, write
/// it, and [`put`](BufPool::put) back what the write's completion hands
/// over (`c.buffer.into_user()`); the next `take` reuses its memory.
///
/// Memory stays bounded: the pool keeps at most `max_pooled` buffers, and
/// drops a buffer that grew past `max_capacity` (one huge response does
/// not pin its memory for good).
///
/// ```
/// use gaio_core::BufPool;
///
/// let mut pool: BufPool = BufPool::new(4096);
/// let mut out = pool.take(); // empty, room for 4 KiB
/// out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
/// let at = out.as_ptr();
/// // ... w.write(conn, ctx, out)?; and when its completion `c` comes back:
/// pool.put(Some(out)); // or pool.put(c.buffer.into_user())
/// let again = pool.take();
/// assert!(again.is_empty());
/// assert_eq!(again.as_ptr(), at, "the same memory, reused");
/// ```
pub struct BufPool<B = Vec<u8>> {
    free: Vec<B>,
    capacity: usize,
    max_capacity: usize,
    max_pooled: usize,
}

impl<B: PoolBuf> BufPool<B> {
    /// A pool of buffers of `capacity` bytes, keeping up to 1,024 of them
    /// and none larger than 16 × `capacity` (at least 64 KiB). It
    /// allocates nothing until a buffer is taken.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{BufPool, BytesMut};
    ///
    /// let responses: BufPool = BufPool::new(4096); // of `Vec<u8>`
    /// let replies: BufPool<BytesMut> = BufPool::new(512);
    /// assert_eq!(responses.pooled() + replies.pooled(), 0);
    /// ```
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, 1024, capacity.saturating_mul(16).max(64 * 1024))
    }

    /// A pool of buffers of `capacity` bytes, keeping up to `max_pooled`
    /// of them and dropping any that grew past `max_capacity` (taken as
    /// `capacity` if smaller).
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::BufPool;
    ///
    /// // 10,000 clients, each with at most one response in flight: keep a
    /// // buffer for each, and none that grew past 1 MiB.
    /// let mut pool: BufPool = BufPool::with_limits(4096, 10_000, 1 << 20);
    /// pool.put(Vec::with_capacity(2 << 20)); // too large: dropped
    /// assert_eq!(pool.pooled(), 0);
    /// ```
    pub fn with_limits(capacity: usize, max_pooled: usize, max_capacity: usize) -> Self {
        BufPool {
            free: Vec::new(),
            capacity,
            max_capacity: max_capacity.max(capacity),
            max_pooled,
        }
    }

    /// An empty buffer with room for at least the pool's capacity: a
    /// pooled one if there is one, a new one otherwise.
    ///
    /// # Panics
    ///
    /// If a new buffer is needed and
    /// [`PoolBuf::with_capacity`] panics: for `Vec<u8>` and `BytesMut`, a
    /// capacity over `isize::MAX` bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::BufPool;
    ///
    /// let mut pool: BufPool = BufPool::new(4096);
    /// let out = pool.take();
    /// assert!(out.is_empty() && out.capacity() >= 4096);
    /// ```
    #[must_use]
    pub fn take(&mut self) -> B {
        self.free.pop().unwrap_or_else(|| B::with_capacity(self.capacity))
    }

    /// Gives a buffer back, emptied, for a later [`take`](BufPool::take);
    /// `None` (a completion without a user buffer) is ignored, and so is a
    /// buffer too small or too large to keep, or one past the pool's limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::{BufPool, Completion};
    ///
    /// fn written(pool: &mut BufPool, c: Completion<(), Vec<u8>>) {
    ///     pool.put(c.buffer.into_user()); // the write's buffer, for the next response
    /// }
    /// ```
    pub fn put(&mut self, buf: impl Into<Option<B>>) {
        let Some(mut buf) = buf.into() else { return };
        let cap = buf.capacity();
        if cap < self.capacity || cap > self.max_capacity || self.free.len() >= self.max_pooled {
            return;
        }
        buf.clear();
        self.free.push(buf);
    }

    /// How many buffers wait in the pool.
    ///
    /// # Examples
    ///
    /// ```
    /// use gaio_core::BufPool;
    ///
    /// let mut pool: BufPool = BufPool::new(64);
    /// let out = pool.take();
    /// assert_eq!(pool.pooled(), 0);
    /// pool.put(out);
    /// assert_eq!(pool.pooled(), 1);
    /// ```
    pub fn pooled(&self) -> usize {
        self.free.len()
    }
}

impl<B> fmt::Debug for BufPool<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufPool")
            .field("pooled", &self.free.len())
            .field("capacity", &self.capacity)
            .field("max_capacity", &self.max_capacity)
            .field("max_pooled", &self.max_pooled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_reuses_what_put_gave_back() {
        let mut pool: BufPool = BufPool::new(100);
        let mut a = pool.take();
        assert!(a.is_empty() && a.capacity() >= 100);
        a.extend_from_slice(b"response");
        let ptr = a.as_ptr();
        pool.put(a);
        assert_eq!(pool.pooled(), 1);
        let b = pool.take();
        assert_eq!((b.len(), b.as_ptr()), (0, ptr));
        assert_eq!(pool.pooled(), 0);
        pool.put(None);
        assert_eq!(pool.pooled(), 0);
    }

    #[test]
    fn memory_is_bounded_by_count_and_size() {
        let mut pool: BufPool = BufPool::with_limits(64, 2, 1000);
        pool.put(Vec::with_capacity(10_000)); // too large: dropped
        pool.put(Vec::with_capacity(10)); // too small to hand out: dropped
        assert_eq!(pool.pooled(), 0);
        for _ in 0..5 {
            pool.put(Vec::with_capacity(64));
        }
        assert_eq!(pool.pooled(), 2);
    }

    #[test]
    fn bytes_mut_buffers_pool_too() {
        let mut pool: BufPool<BytesMut> = BufPool::new(256);
        let mut a = pool.take();
        a.extend_from_slice(b"+OK\r\n");
        pool.put(a);
        let b = pool.take();
        assert!(b.is_empty() && b.capacity() >= 256);
    }
}
