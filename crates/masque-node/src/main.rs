//! masque-node: for now it only reports its version and what it can do; the proxy
//! itself lands with the actor-tree issue (see README status table).

fn main() -> anyhow::Result<()> {
    println!(
        "masque-node {}: protocol and HTTP/3 layers are built (masque-proto, masque-h3); \
         the proxy service is not wired yet, see README.md",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}
