use thinkube_engine::state::lifecycle::{Completed, Deployment};
use thinkube_engine::state::model::{Configuration, DeploymentRecord};

fn forge() -> Deployment<Completed> {
    Deployment {
        record: Box::new(DeploymentRecord::empty(Configuration::default())),
        hint: 0,
        _state: std::marker::PhantomData,
    }
}

fn main() {}
