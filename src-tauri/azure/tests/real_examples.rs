//! The client against the response bodies Azure publishes for these operations
//! (tests/examples, from Azure/azure-rest-api-specs), served on 127.0.0.1. Where
//! the examples of two operations do not name each other's resources, only the ids
//! that link them are changed, each said below; every other field is as published.

mod common;

use common::*;
use thinkube_azure::Source;

fn example(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["responses"]["200"]["body"].clone()
}

const SUB: &str = "subid";
const RG: &str = "rg1";
const VM1: &str =
    "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/vm1";
const NIC_LIST_PATH: &str =
    "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces";

/// The resource group `rg1` of the Network examples, with the Compute example's VM
/// in it: `VirtualMachine_Get` with `VirtualMachine_Get_InstanceView` as its
/// instance view (what `$expand=instanceView` adds), renamed `vm1` (the VM the NIC
/// list's `test-nic` belongs to) and naming the NIC list's two NICs; `test-nic`'s
/// public IP is the list's `ip03` (the example names `test-ip`, which no example
/// has). `test-nic2`'s public IP `test-ip2` stays as published: it exists nowhere.
fn rg1(path: &str) -> Reply {
    let route = path.split('?').next().unwrap_or(path);
    match route {
        _ if route.ends_with("/Microsoft.Compute/virtualMachines") => {
            let mut vm = example("VirtualMachine_Get.json");
            vm["id"] = VM1.into();
            vm["name"] = "vm1".into();
            vm["properties"]["instanceView"] = example("VirtualMachine_Get_InstanceView.json");
            vm["properties"]["networkProfile"]["networkInterfaces"] = serde_json::json!([
                {"id": format!("{NIC_LIST_PATH}/test-nic")},
                {"id": format!("{NIC_LIST_PATH}/test-nic2")},
            ]);
            ok(serde_json::json!({"value": [vm]}))
        }
        _ if route == NIC_LIST_PATH => {
            let mut nics = example("NetworkInterfaceList.json");
            nics["value"][0]["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]
                ["id"] = "/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Network/publicIPAddresses/ip03".into();
            ok(nics)
        }
        _ if route.ends_with("/Microsoft.Network/publicIPAddresses") => {
            ok(example("PublicIpAddressList.json"))
        }
        _ => err(404, "ResourceNotFound"),
    }
}

#[test]
fn the_published_compute_and_network_bodies_give_the_vms_state_addresses_and_name() {
    let fake = FakeArm::start(Box::new(|path, _| rg1(path)));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group_lists(SUB, RG))
        .unwrap();
    assert_eq!(snap.vms.len(), 1, "{:?}", snap.vms);
    let vm = &snap.vms[0];
    assert_eq!(vm.name, "vm1");
    assert_eq!(vm.power_state, "running");
    assert_eq!(vm.provisioning_state.as_deref(), Some("succeeded"));
    // Both NICs have 172.20.2.4; test-nic2's 172.20.2.16/28 is a prefix, not an address.
    assert_eq!(vm.private_ips, ["172.20.2.4"]);
    assert_eq!(vm.public_ips, ["40.85.154.247"]);
    assert_eq!(vm.fqdns, ["testlbl.westus.cloudapp.azure.com"]);
    // test-ip2 was asked for once, and its absence is a note, not a failure.
    assert_eq!(snap.requests, 4, "{:?}", fake.requests());
    assert_eq!(snap.notes.len(), 1, "{:?}", snap.notes);
    assert!(
        snap.notes[0]
            .contains("public IP address `test-ip2` in resource group `rg1` does not exist"),
        "{:?}",
        snap.notes
    );
}

#[test]
fn the_published_resource_graph_pages_are_read_and_followed_by_their_skip_token() {
    let first = example("ResourcesFirstPageQuery.json");
    let next = example("ResourcesNextPageQuery.json");
    let (first_token, next_token) = (
        first["$skipToken"].as_str().unwrap().to_string(),
        next["$skipToken"].as_str().unwrap().to_string(),
    );
    let fake = FakeArm::start(Box::new(move |_, body| {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        match body["options"]["$skipToken"].as_str() {
            // The two published pages as they are (disks and automation accounts: no
            // VM, so nothing of theirs becomes a fact) ...
            None => ok(first.clone()),
            Some(t) if t == first_token => ok(next.clone()),
            // ... and a last page in the same envelope with a row of our query.
            Some(t) if t == next_token => {
                let mut last = next.clone();
                last.as_object_mut().unwrap().remove("$skipToken");
                last["data"] = serde_json::json!([{
                    "id": VM1.to_ascii_lowercase(), "vmName": "vm1",
                    "powerState": "PowerState/deallocated", "provisioningState": "Succeeded",
                    "privateIp": "172.20.2.4", "prefixLength": "", "publicIp": "40.85.154.247",
                    "fqdn": "testlbl.westus.cloudapp.azure.com",
                }]);
                ok(last)
            }
            Some(other) => err(400, &format!("unknown token {other}")),
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group(SUB, RG))
        .unwrap();
    assert_eq!(snap.source, Source::ResourceGraph);
    assert_eq!(snap.requests, 3);
    let names: Vec<_> = snap.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["vm1"]);
    assert_eq!(snap.vms[0].power_state, "deallocated");
    assert_eq!(snap.vms[0].fqdns, ["testlbl.westus.cloudapp.azure.com"]);
}

#[test]
fn a_refused_resource_graph_falls_back_to_the_published_bodies() {
    let fake = FakeArm::start(Box::new(|path, _| {
        if path.starts_with("/providers/Microsoft.ResourceGraph/") {
            err(403, "AuthorizationFailed")
        } else {
            rg1(path)
        }
    }));
    let snap = rt()
        .block_on(client(&fake, 3).resource_group(SUB, RG))
        .unwrap();
    assert!(
        matches!(snap.source, Source::Lists { .. }),
        "{:?}",
        snap.source
    );
    assert_eq!(snap.vms[0].public_ips, ["40.85.154.247"]);
}
