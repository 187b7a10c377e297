//! Qualified paths, lifetimes, Self, trait objects with '_, macros.
use std::borrow::Cow;
use keylock::write_lock;

pub trait Tr {
    type Out;
}
impl Tr for u8 {
    type Out = u16;
}

#[write_lock("qself")]
fn qself<T: Tr>() -> Option<<T as Tr>::Out> {
    None
}

#[write_lock("qself2")]
fn qself2<T: Tr>() -> Vec<T::Out> {
    Vec::new()
}

pub struct S {
    v: Vec<u8>,
}

macro_rules! bytes {
    () => { Vec<u8> };
}

impl S {
    #[write_lock("s1")]
    fn new() -> Result<Self, String> {
        Ok(S { v: vec![1] })
    }
    #[write_lock("s2")]
    fn first<'a>(&'a self) -> Option<&'a u8> {
        self.v.first()
    }
    #[write_lock("s3")]
    fn cow(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.v)
    }
    #[write_lock("s4")]
    fn closure(&self) -> Box<dyn Fn() -> usize + '_> {
        Box::new(move || self.v.len())
    }
    #[write_lock("s5")]
    fn by_macro(&self) -> bytes!() {
        self.v.clone()
    }
    #[write_lock("s6")]
    fn arr<const N: usize>(&self) -> [u8; N] {
        [0; N]
    }
    #[write_lock("s7")]
    fn iter(&self) -> impl Iterator<Item = &u8> + '_ {
        self.v.iter()
    }
    #[write_lock("s8")]
    fn generic<T: Send>(&self, t: T) -> T {
        t
    }
    #[write_lock("s9")]
    fn pinned(&self) -> std::pin::Pin<Box<Vec<u8>>> {
        Box::pin(self.v.clone())
    }
}

fn main() {
    let s = S::new().unwrap();
    let _ = (qself::<u8>(), qself2::<u8>(), s.first(), s.cow(), s.closure()(), s.by_macro(), s.arr::<2>(), s.iter().count(), s.generic(1), s.pinned());
}
