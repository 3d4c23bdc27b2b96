//! Prints the simulator's library folder (for `scripts/cuda-sim.sh`).

fn main() {
    println!("{}", charlm_cuda_sim::LIB_DIR);
}
