//! Registry credentials through CRI to a real containerd: an image in a private registry
//! (htpasswd) pulls with the right user and password and is refused without them.

use kubelet_core::Runtime;
use kubelet_core::runtime::AuthConfig;
use kubelet_cri::test_registry::TestRegistry;
use kubelet_cri::testing::TestContainerd;

fn auth(username: &str, password: &str) -> AuthConfig {
    AuthConfig {
        username: username.into(),
        password: password.into(),
        ..AuthConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_image_pulls_with_its_credentials_only() {
    let registry = tokio::task::spawn_blocking(|| TestRegistry::start("robot", "s3cret"))
        .await
        .expect("join")
        .expect("registry");
    let Some(registry) = registry else { return };
    let Some(containerd) = TestContainerd::start().await else {
        return;
    };
    let image = tokio::task::block_in_place(|| registry.push_busybox("team/busybox:private"))
        .expect("push");
    let runtime = containerd.runtime().await;

    let anonymous = runtime
        .pull_image(&image, None)
        .await
        .expect_err("no creds");
    assert!(
        anonymous.to_string().contains("401 Unauthorized"),
        "{anonymous}"
    );
    let wrong = runtime
        .pull_image(&image, Some(&auth("robot", "wrong")))
        .await
        .expect_err("wrong password");
    assert!(wrong.to_string().contains("401 Unauthorized"), "{wrong}");
    assert!(
        runtime
            .image_status(&image)
            .await
            .expect("status")
            .is_none()
    );

    let id = runtime
        .pull_image(&image, Some(&auth("robot", "s3cret")))
        .await
        .expect("pull with credentials");
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(
        runtime
            .image_status(&image)
            .await
            .expect("status")
            .is_some()
    );
}
