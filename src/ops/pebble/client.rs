//! The real Pebble client: HTTP/1.1 over the container's unix socket.
//! STUB: being implemented.

use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct PebbleClient {
    pub socket: PathBuf,
}

impl PebbleClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }
}

impl super::Pebble for PebbleClient {
    fn system_info(&self) -> super::PebbleResult<super::SystemInfo> { todo!() }
    fn health(&self, _: Option<super::CheckLevel>, _: &[&str]) -> super::PebbleResult<bool> { todo!() }
    fn add_layer(&self, _: &str, _: &super::Layer, _: bool) -> super::PebbleResult<()> { todo!() }
    fn get_plan(&self) -> super::PebbleResult<super::Plan> { todo!() }
    fn services(&self, _: &[&str]) -> super::PebbleResult<Vec<super::ServiceInfo>> { todo!() }
    fn service_action(&self, _: super::ServiceAction, _: &[&str]) -> super::PebbleResult<String> { todo!() }
    fn send_signal(&self, _: &str, _: &[&str]) -> super::PebbleResult<()> { todo!() }
    fn changes(&self, _: super::ChangeSelect, _: Option<&str>) -> super::PebbleResult<Vec<super::Change>> { todo!() }
    fn change(&self, _: &str) -> super::PebbleResult<super::Change> { todo!() }
    fn wait_change(&self, _: &str, _: std::time::Duration) -> super::PebbleResult<super::Change> { todo!() }
    fn abort_change(&self, _: &str) -> super::PebbleResult<super::Change> { todo!() }
    fn push(&self, _: &str, _: &[u8], _: &super::PushOptions) -> super::PebbleResult<()> { todo!() }
    fn pull(&self, _: &str) -> super::PebbleResult<Vec<u8>> { todo!() }
    fn list_files(&self, _: &str, _: Option<&str>, _: bool) -> super::PebbleResult<Vec<super::FileInfo>> { todo!() }
    fn make_dir(&self, _: &str, _: &super::MakeDirOptions) -> super::PebbleResult<()> { todo!() }
    fn remove_path(&self, _: &str, _: bool) -> super::PebbleResult<()> { todo!() }
    fn checks(&self, _: Option<super::CheckLevel>, _: &[&str]) -> super::PebbleResult<Vec<super::CheckInfo>> { todo!() }
    fn check_action(&self, _: super::CheckAction, _: &[&str]) -> super::PebbleResult<Vec<String>> { todo!() }
    fn notify(&self, _: &str, _: &std::collections::BTreeMap<String, String>, _: Option<std::time::Duration>) -> super::PebbleResult<String> { todo!() }
    fn notices(&self, _: &super::NoticesQuery) -> super::PebbleResult<Vec<super::Notice>> { todo!() }
    fn notice(&self, _: &str) -> super::PebbleResult<super::Notice> { todo!() }
}
