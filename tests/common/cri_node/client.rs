//! A blocking CRI client over containerd's unix socket: the calls kubelet
//! makes, one tokio runtime per client (a multi-thread one: calls may come from
//! several test threads at once, e.g. a long exec beside an upgrade), each call
//! bounded by a timeout so that a stuck runtime fails the test instead of
//! hanging it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::{Channel, Endpoint, Uri};

/// Longer than containerd's own CNI and runc work takes on a loaded 2-core
/// machine; a call that takes this long is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

pub struct CriClient {
    runtime: tokio::runtime::Runtime,
    service: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// A failed CRI call: the method and gRPC's status.
#[derive(Debug)]
pub struct CriError {
    pub method: &'static str,
    pub status: tonic::Status,
}

impl std::fmt::Display for CriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CRI {} failed: {:?}: {}",
            self.method,
            self.status.code(),
            self.status.message()
        )
    }
}

macro_rules! call {
    ($self:ident, $client:ident, $method:ident, $request:expr) => {{
        let mut client = $self.$client.clone();
        let request = $request;
        $self
            .runtime
            .block_on(
                async move { tokio::time::timeout(CALL_TIMEOUT, client.$method(request)).await },
            )
            .map_err(|_| CriError {
                method: stringify!($method),
                status: tonic::Status::deadline_exceeded(format!("no answer in {CALL_TIMEOUT:?}")),
            })?
            .map(|response| response.into_inner())
            .map_err(|status| CriError {
                method: stringify!($method),
                status,
            })
    }};
}

impl CriClient {
    pub fn connect(socket: &Path) -> Result<CriClient, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|err| format!("tokio runtime: {err}"))?;
        let path: PathBuf = socket.to_path_buf();
        let channel = runtime
            .block_on(async move {
                Endpoint::try_from("http://[::]:0")
                    .expect("a static URI")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
            })
            .map_err(|err| format!("connecting to {}: {err}", socket.display()))?;
        Ok(CriClient {
            runtime,
            service: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    pub fn version(&self) -> Result<VersionResponse, CriError> {
        call!(self, service, version, VersionRequest::default())
    }

    /// The runtime's conditions (RuntimeReady, NetworkReady) as kubelet reads them.
    pub fn status(&self) -> Result<StatusResponse, CriError> {
        call!(self, service, status, StatusRequest { verbose: false })
    }

    pub fn run_pod_sandbox(&self, config: PodSandboxConfig) -> Result<String, CriError> {
        let request = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        call!(self, service, run_pod_sandbox, request).map(|r| r.pod_sandbox_id)
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let request = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        call!(self, service, stop_pod_sandbox, request).map(drop)
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let request = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        call!(self, service, remove_pod_sandbox, request).map(drop)
    }

    pub fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatusResponse, CriError> {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: true,
        };
        call!(self, service, pod_sandbox_status, request)
    }

    pub fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, CriError> {
        call!(
            self,
            service,
            list_pod_sandbox,
            ListPodSandboxRequest::default()
        )
        .map(|r| r.items)
    }

    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
        sandbox_config: PodSandboxConfig,
    ) -> Result<String, CriError> {
        let request = CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        };
        call!(self, service, create_container, request).map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> Result<(), CriError> {
        let request = StartContainerRequest {
            container_id: id.to_owned(),
        };
        call!(self, service, start_container, request).map(drop)
    }

    pub fn stop_container(&self, id: &str, timeout_seconds: i64) -> Result<(), CriError> {
        let request = StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_seconds,
        };
        call!(self, service, stop_container, request).map(drop)
    }

    pub fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let request = RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        call!(self, service, remove_container, request).map(drop)
    }

    pub fn container_status(&self, id: &str) -> Result<ContainerStatus, CriError> {
        let request = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        call!(self, service, container_status, request).map(|r| r.status.unwrap_or_default())
    }

    /// Runs `cmd` in a running container and returns (exit code, stdout, stderr).
    pub fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout_seconds: i64,
    ) -> Result<(i32, String, String), CriError> {
        let request = ExecSyncRequest {
            container_id: container_id.to_owned(),
            cmd: cmd.iter().map(|arg| arg.to_string()).collect(),
            timeout: timeout_seconds,
        };
        call!(self, service, exec_sync, request).map(|r| {
            (
                r.exit_code,
                String::from_utf8_lossy(&r.stdout).into_owned(),
                String::from_utf8_lossy(&r.stderr).into_owned(),
            )
        })
    }

    pub fn image_status(&self, image: &str) -> Result<Option<Image>, CriError> {
        let request = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        };
        call!(self, images, image_status, request).map(|r| r.image)
    }
}
