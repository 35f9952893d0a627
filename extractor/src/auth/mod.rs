//! Auth schemes that need more than a header: today OAuth2 client credentials, which fetch
//! and cache a token. The static schemes (API key, bearer, basic) are `client::Auth` arms.

pub mod oauth2;

pub use oauth2::OAuth2ClientCredentials;
