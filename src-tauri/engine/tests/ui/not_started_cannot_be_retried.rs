use thinkube_engine::state::lifecycle::{Deployment, NotStarted};

fn retry(fresh: Deployment<NotStarted>) {
    let _ = fresh.retry(&[]);
}

fn main() {}
