//! Stand-ins for a database in trouble, and a pooler in front of it. None
//! touches the shared server.

mod pgbouncer;
mod postgres;
mod proxy;

pub use pgbouncer::{PgBouncer, Upstream};
pub use postgres::PrivatePostgres;
pub use proxy::TcpProxy;
