//! Stand-ins for a database in trouble. Neither touches the shared server.

mod postgres;
mod proxy;

pub use postgres::PrivatePostgres;
pub use proxy::TcpProxy;
