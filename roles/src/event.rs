//! Protocol events: what a role reports for `events.jsonl` and for metrics.
//!
//! # Typed events
//!
//! Each role family declares one enum of struct variants (`SnEvent::Drop { reason, count,
//! .. }`) next to the role; the [`Event`] a role emits holds one such value, and readers get
//! it back with [`Event::downcast_ref`]. Readers (the testbed's results and
//! experiments) match on variants and read typed fields, so renaming an event or a field is a
//! compile error instead of a silently empty result.
//!
//! Every variant knows its dotted kind string (`"sn.drop"`, [`Event::kind`]) and writes its
//! fields, in declaration order, through a [`FieldSink`] ([`Event::write_fields`]). The
//! testbed implements the sink with `serde_json`, so roles do not depend on a JSON library and
//! the bytes of `events.jsonl` stay what they were: integers are numbers, `f64` prints like
//! `serde_json` prints it, addresses are strings, `Option` fields are left out when `None`
//! unless the table marks them `[null]` (then they are written as `null`).
//!
//! The enums, their kind strings and their field writers come from one table per family,
//! written with [`event_enum!`](crate::event_enum):
//!
//! ```ignore
//! binfm_roles::event_enum! {
//!     /// Events of the echo apps.
//!     pub enum EchoEvent {
//!         /// The client got a reply.
//!         Reply = "echo.reply" { seq: u64, rtt_ns: u64, from: SocketAddrV4 },
//!         /// `seq` is left out when the request is too short to carry one.
//!         Request = "echo.request" { from: SocketAddrV4, bytes: usize, seq: Option<u64> },
//!         /// `[null]`: written as `null` when `None` (instead of being left out).
//!         Ack = "dhcp.ack" { address: Ipv4Addr, [null] router: Option<Ipv4Addr> },
//!     }
//! }
//! ```
//!
//! A field marked `[flatten]` writes the fields of a value that has its own
//! `write_fields(&self, &mut dyn FieldSink)` (the sample carried by `sn.drop`).
//!
//! A field named with a raw identifier (`r#try`, `r#for`) is written under the keyword
//! itself (`try`, `for`).
//!
//! The end node's families live next to the code that emits them: `en.*` in
//! `en/events.rs`, `call.*` in `call_events.rs` (a leaf used by `call` and `en`),
//! `vertical.*` in `vertical/en/events.rs`. The shared media session reports through
//! constructors its model gives it (`session::media::MediaEvents`).

use std::fmt::Display;
use std::net::{Ipv4Addr, SocketAddrV4};

/// Receives the fields of an event in order; the testbed's implementation builds the JSON
/// object of `events.jsonl`. One method per JSON type, so the writer decides the bytes.
pub trait FieldSink {
    /// An unsigned integer.
    fn u64(&mut self, key: &str, v: u64);
    /// A signed integer.
    fn i64(&mut self, key: &str, v: i64);
    /// A float (printed as `serde_json` prints an `f64`, `760.0`).
    fn f64(&mut self, key: &str, v: f64);
    /// A boolean.
    fn bool(&mut self, key: &str, v: bool);
    /// A string.
    fn str(&mut self, key: &str, v: &str);
    /// A list of strings.
    fn strs(&mut self, key: &str, v: &[String]);
    /// `null`.
    fn null(&mut self, key: &str);
}

/// A value an event field can hold: knows which [`FieldSink`] method writes it.
pub trait Field {
    /// Writes `self` as the field `key`.
    fn write(&self, key: &str, sink: &mut dyn FieldSink);
}

macro_rules! unsigned_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn write(&self, key: &str, sink: &mut dyn FieldSink) {
                sink.u64(key, u64::try_from(*self).unwrap_or(u64::MAX));
            }
        }
    )*};
}
unsigned_field!(u8, u16, u32, u64, usize);

impl Field for i64 {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.i64(key, *self);
    }
}

impl Field for f64 {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.f64(key, *self);
    }
}

impl Field for bool {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.bool(key, *self);
    }
}

impl Field for String {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.str(key, self);
    }
}

impl Field for &'static str {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        sink.str(key, self);
    }
}

/// Addresses are written as their display string (`10.1.0.100`, `10.1.0.100:5000`).
macro_rules! display_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn write(&self, key: &str, sink: &mut dyn FieldSink) {
                sink.str(key, &self.to_string());
            }
        }
    )*};
}
display_field!(Ipv4Addr, SocketAddrV4);

/// Left out when `None` (mark the field `[null]` in the table to write `null` instead).
impl<T: Field> Field for Option<T> {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        if let Some(v) = self {
            v.write(key, sink);
        }
    }
}

/// A list of displayed values (a DHCP lease's super nodes).
impl<T: Display> Field for Vec<T> {
    fn write(&self, key: &str, sink: &mut dyn FieldSink) {
        let v: Vec<String> = self.iter().map(ToString::to_string).collect();
        sink.strs(key, &v);
    }
}

/// Declares an event enum from a table: each variant with its kind string and typed fields.
/// Generates the enum (deriving `Debug, Clone, PartialEq`), `kind()` and `write_fields()`.
/// See the [module docs](crate::event) for the table syntax.
#[macro_export]
macro_rules! event_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $kind:literal {
                    $( $([$flag:ident])? $field:ident : $ty:ty ),* $(,)?
                }
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[allow(missing_docs)]
                $variant { $( $field: $ty ),* },
            )*
        }

        impl $name {
            /// The dotted kind written to `events.jsonl` (`<role>.<what>`).
            pub fn kind(&self) -> &'static str {
                match self {
                    $( Self::$variant { .. } => $kind, )*
                }
            }

            /// Writes the fields in table order.
            pub fn write_fields(&self, sink: &mut dyn $crate::event::FieldSink) {
                match self {
                    $(
                        Self::$variant { $( $field ),* } => {
                            $( $crate::__event_field!(sink, $field, $($flag)?); )*
                        }
                    )*
                }
            }
        }

        impl $crate::event::TypedEvent for $name {
            fn kind(&self) -> &'static str {
                $name::kind(self)
            }
            fn write_fields(&self, sink: &mut dyn $crate::event::FieldSink) {
                $name::write_fields(self, sink)
            }
            fn clone_event(&self) -> Box<dyn $crate::event::TypedEvent> {
                Box::new(self.clone())
            }
            fn eq_event(&self, other: &dyn $crate::event::TypedEvent) -> bool {
                (other as &dyn std::any::Any).downcast_ref::<Self>() == Some(self)
            }
        }

        impl From<$name> for $crate::event::Event {
            fn from(e: $name) -> Self {
                $crate::event::Event::new(e)
            }
        }
    };
}

/// One field of [`event_enum!`](crate::event_enum): plain, `null` when `None`, or flattened.
#[doc(hidden)]
#[macro_export]
macro_rules! __event_field {
    ($sink:ident, $f:ident, ) => {
        $crate::event::Field::write($f, $crate::event::key(stringify!($f)), $sink)
    };
    ($sink:ident, $f:ident, null) => {
        match $f {
            Some(v) => $crate::event::Field::write(v, $crate::event::key(stringify!($f)), $sink),
            None => $sink.null($crate::event::key(stringify!($f))),
        }
    };
    ($sink:ident, $f:ident, flatten) => {
        $f.write_fields($sink)
    };
}

/// The JSON key of a field: its name, without the `r#` of a raw identifier (a field named
/// `r#try` is written as `try`).
#[doc(hidden)]
pub fn key(name: &'static str) -> &'static str {
    name.strip_prefix("r#").unwrap_or(name)
}

/// What every event family is: an enum that knows each variant's kind and writes its fields.
/// [`event_enum!`](crate::event_enum) implements it; readers get a family back from an
/// [`Event`] with [`Event::downcast_ref`].
pub trait TypedEvent: std::fmt::Debug + std::any::Any + Send + Sync {
    /// The dotted kind written to `events.jsonl` (`<role>.<what>`).
    fn kind(&self) -> &'static str;
    /// Writes the fields in order.
    fn write_fields(&self, sink: &mut dyn FieldSink);
    /// A boxed copy.
    fn clone_event(&self) -> Box<dyn TypedEvent>;
    /// Whether `other` is the same family and the same value.
    fn eq_event(&self, other: &dyn TypedEvent) -> bool;
}

/// Every event a role emits: one value of some family's enum. The set of families is open
/// (a new role brings its own without touching this file), so no module here names a role.
#[derive(Debug)]
pub struct Event(Box<dyn TypedEvent>);

impl Event {
    /// An event of family `E`.
    pub fn new<E: TypedEvent>(e: E) -> Self {
        Event(Box::new(e))
    }

    /// The dotted kind written to `events.jsonl`.
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// Writes the fields in order.
    pub fn write_fields(&self, sink: &mut dyn FieldSink) {
        self.0.write_fields(sink);
    }

    /// The event as a value of family `E`, if it is one (`event.downcast_ref::<SnEvent>()`).
    pub fn downcast_ref<E: TypedEvent>(&self) -> Option<&E> {
        (&*self.0 as &dyn std::any::Any).downcast_ref::<E>()
    }
}

impl Clone for Event {
    fn clone(&self) -> Self {
        Event(self.0.clone_event())
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_event(&*other.0)
    }
}
