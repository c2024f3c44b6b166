use clap::Parser;
use medflow_infra::{clock, telemetry};
use medflow_query_api::{Application, QueryApiSettings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("query-api");
    let settings = QueryApiSettings::parse();
    let addr = settings.http_addr;
    let application = Application::build(settings, clock::system_clock()).await?;
    tracing::info!(%addr, port = application.port, "query API listening");
    application.run_until_stopped().await?;
    tracing::info!("query API stopped");
    Ok(())
}
