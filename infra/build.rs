// `sqlx::migrate!` embeds schema/migrations at compile time but does not watch the
// directory, so a new migration file would not reach an incremental build without this.
fn main() {
    println!("cargo:rerun-if-changed=../schema/migrations");
}
