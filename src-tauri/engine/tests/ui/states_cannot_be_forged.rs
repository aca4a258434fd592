use thinkube_engine::lifecycle::{Completed, Deployment};
use thinkube_engine::model::{Configuration, DeploymentRecord};

fn forge() -> Deployment<Completed> {
    Deployment {
        record: Box::new(DeploymentRecord::empty(Configuration::default())),
        _state: std::marker::PhantomData,
    }
}

fn main() {}
