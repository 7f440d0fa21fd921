//! The gRPC wire contract (`tollgate.v1`). Only generated types live here: both sides convert
//! them into their own domain types at the boundary.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod codec;

pub mod v1 {
    tonic::include_proto!("tollgate.v1");

    /// Encoded `FileDescriptorSet` for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("tollgate_descriptor");
}
