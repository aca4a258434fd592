use thinkube_engine::state::lifecycle::{Deployment, Interrupted};
use thinkube_engine::timestamp::Timestamp;

fn settle(stopped: Deployment<Interrupted>) {
    let _ = stopped.settle(Timestamp::now());
}

fn main() {}
