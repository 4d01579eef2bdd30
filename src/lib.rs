pub use wgrad_gpu_core as gpu_core;
