//! Where work runs: the SLURM executor (job arrays, waiting, queue state) and voxel shards with
//! their part files and merge, shared by the study grids and sharded encodes.

pub mod shards;
pub mod slurm;
