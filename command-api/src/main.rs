use clap::Parser;
use medflow_command_api::{Application, CommandApiSettings};
use medflow_infra::{clock, telemetry};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("command-api");
    let settings = CommandApiSettings::parse();
    let addr = settings.http_addr;
    let application = Application::build(settings, clock::system_clock()).await?;
    tracing::info!(%addr, port = application.port, "command API listening");
    application.run_until_stopped().await?;
    tracing::info!("command API stopped");
    Ok(())
}
