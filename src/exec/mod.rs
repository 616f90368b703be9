//! Where work runs: the local executor (tasks on threads of this process), the SLURM executor
//! (job arrays, waiting, queue state) and voxel shards with their part files and merge, shared
//! by the study grids, sharded encodes and `bench-whole-brain`.

pub mod local;
pub mod shards;
pub mod slurm;
