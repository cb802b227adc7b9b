//! Call-backs that media servers make to ask whether a viewer may play.

pub mod flussonic;
