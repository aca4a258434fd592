use thinkube_engine::state::lifecycle::{Deployment, Failed};
use thinkube_engine::timestamp::Timestamp;

fn finish(mut failed: Deployment<Failed>) {
    failed.complete_step("a", Timestamp::now());
}

fn main() {}
