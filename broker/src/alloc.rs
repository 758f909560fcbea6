//! A global allocator that survives absurd reservations made from untrusted lengths.
//!
//! The kafka-protocol decoder reserves `Vec::with_capacity(n)` from an array length read off the
//! wire before it reads the elements. A 100-byte frame claiming 2^31 elements asks for hundreds
//! of GiB; the system allocator refuses, and Rust aborts the whole process on allocation
//! failure. That would let one malformed request kill the node.
//!
//! This allocator serves requests of [`HUGE_BYTES`] or more with an anonymous `mmap` marked
//! `MAP_NORESERVE`: address space is reserved, memory is committed only for pages actually
//! written. The decoder then fails on the short buffer and frees the mapping, and the connection
//! is closed with an error. Everything smaller goes to the system allocator unchanged.
//! (`unsafe` is denied across the workspace; this module is the one audited exception.)
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are served by lazily committed mappings.
pub const HUGE_BYTES: usize = 4 << 30;
const PAGE_BYTES: usize = 4096;

/// The guarded allocator (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: anonymous private mapping with no fixed address; the kernel picks the range.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe fn unmap(ptr: *mut u8, size: usize) {
    // SAFETY: `ptr`/`size` describe a mapping made by `map` with the same size.
    unsafe {
        libc::munmap(ptr.cast(), size);
    }
}

// SAFETY: every pointer is freed by the same mechanism that produced it, chosen by the layout,
// which Rust passes back unchanged to `dealloc`/`realloc`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Fresh anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe { unmap(ptr, layout.size()) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do not overlap.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// Lets the system allocator keep large freed blocks for reuse.
///
/// glibc serves every block over 128 KiB with a fresh `mmap` and returns it on free, so each
/// fetch response (often several MiB) paid for page faults and zeroing of brand-new pages;
/// profiling showed that at over a fifth of the broker's time when consumers read at full speed.
/// Raising the thresholds keeps such blocks in the heap. Call once, before serving.
pub fn tune_system_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before serving starts.
    unsafe {
        // 32 MiB is glibc's ceiling for the mmap threshold on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_reservation_does_not_abort() {
        // What the decoder does with a bogus array length: reserve, then fail to fill.
        let v: Vec<[u8; 64]> = Vec::with_capacity(1 << 31);
        assert!(v.capacity() >= 1 << 31);
        drop(v);
        let small: Vec<u8> = Vec::with_capacity(1024);
        assert!(small.capacity() >= 1024);
    }
}
