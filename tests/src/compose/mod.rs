//! `docker-compose.yml` without Docker: the file read as compose reads it, and its services
//! run as local processes (see `tests/tests/compose_stack.rs` for the scenario, and what this
//! cannot exercise).
//!
//! Every `host:port` naming a service (`kafka:9092`, `postgres:5432`, `demo-api:8080`,
//! `schema-registry:8081`) in a command, an environment value or a mounted file becomes the
//! stand-in's 127.0.0.1 address; each listen address `0.0.0.0:PORT` becomes a free
//! 127.0.0.1 port per replica, which the healthchecks' `127.0.0.1:PORT` follows. A service
//! hostname left anywhere is an error.

// The file as compose reads it.
mod interpolate; // `${VAR:-default}` and friends, `.env` lines
mod kafka; // the `apache/kafka` image's `KAFKA_*` → `server.properties`
mod spec; // services, healthchecks, durations, start order

// The stack, as local processes.
mod probe; // healthchecks run from here
mod service; // our services: command, environment, mounts
mod stack; // `Stack`: up, stop, endpoints, logs
mod standins; // Kafka, Apicurio for the registry, the local PostgreSQL

pub use interpolate::{dotenv, interpolate, interpolate_doc};
pub use kafka::image_property;
pub use spec::{Healthcheck, Spec, compose_duration, parse_services, start_order};
pub use stack::{Endpoint, Replica, Stack};
pub use standins::POSTGRES_PORT;
