use clap::Parser;
use medflow_infra::{db, telemetry, web};
use medflow_projectors::framework::{self, metrics::ProjectorMetrics};
use medflow_projectors::settings::ProjectorCommand;
use medflow_projectors::{all_projections, ProjectorSettings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("projectors");
    let settings = ProjectorSettings::parse();
    let pool = db::pg_pool(&settings.database.url, settings.database.pool_size)?;
    match settings.command.clone().unwrap_or(ProjectorCommand::Run) {
        ProjectorCommand::Run => run(settings, pool).await,
        ProjectorCommand::Rebuild { projection } => {
            let Some(found) = all_projections()
                .into_iter()
                .find(|p| p.name() == projection)
            else {
                let names: Vec<&str> = all_projections().iter().map(|p| p.name()).collect();
                anyhow::bail!(
                    "unknown projection '{projection}'; known projections: {}",
                    names.join(", ")
                );
            };
            let mut client = pool.get().await?;
            let replayed = framework::rebuild(&mut client, &*found).await?;
            println!("rebuilt projection {projection} from {replayed} events");
            Ok(())
        }
    }
}

async fn run(settings: ProjectorSettings, pool: deadpool_postgres::Pool) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let metrics = ProjectorMetrics::register(&registry)?;
    let readiness = web::health::Readiness::default()
        .with("postgres", web::health::postgres_check(pool.clone()))
        .with("kafka", web::health::kafka_check(settings.kafka.clone()))
        .with(
            "consumers",
            metrics.progress.readiness_check(settings.stall.limit()),
        );
    let server = web::ops::serve(settings.http_addr, registry, readiness)?;
    let server_handle = server.handle();
    tokio::spawn(server);
    tracing::info!(addr = %settings.http_addr, "projectors health and metrics endpoint listening");

    let shutdown = CancellationToken::new();
    tokio::spawn(web::ops::cancel_on_signal(shutdown.clone()));
    let mut tasks = Vec::new();
    for projection in all_projections() {
        tasks.push(tokio::spawn(framework::run(
            projection,
            pool.clone(),
            settings.kafka.clone(),
            metrics.clone(),
            shutdown.clone(),
        )));
    }
    for task in tasks {
        task.await??;
    }
    server_handle.stop(true).await;
    Ok(())
}
