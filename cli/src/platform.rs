//! Arguments that `medflow seed` and `medflow demo` share: the running platform's API
//! URLs and the admin that acts on it.

/// Base URLs of the two APIs and the admin's credentials. Not `Debug`, because it
/// contains the admin's password.
#[derive(Clone, clap::Args)]
pub struct PlatformArgs {
    #[arg(
        long,
        env = "MEDFLOW_COMMAND_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub command_url: String,
    #[arg(
        long,
        env = "MEDFLOW_QUERY_API_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub query_url: String,
    /// E-mail address of the admin account that reviews doctors and reads the audit
    /// trail.
    #[arg(
        long,
        env = "MEDFLOW_DEMO_ADMIN_EMAIL",
        default_value = "admin@medflow.example"
    )]
    pub admin_email: String,
    /// Password of that admin.
    #[arg(long, env = "MEDFLOW_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
}
