//! The `rest_api_source` configs of dlt's own documentation (`examples/dlt/`), written as
//! files the way a user would copy them: each must load and mean what it means in dlt. The
//! APIs they name are third parties' (GitHub, PokeAPI, a blog), so only the config is
//! checked here; the same features run end to end against the demo API in the other tests.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use common::config::{AuthConfig, PipelineConfig, WriteDisposition};

fn load(name: &str) -> Result<PipelineConfig> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/dlt")
        .join(name);
    common::config::load(&path).with_context(|| format!("examples/dlt/{name}"))
}

#[test]
fn every_example_loads() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/dlt");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let cfg = load(&name)?;
        ensure!(!cfg.resources.is_empty(), "{name}");
        seen += 1;
    }
    ensure!(seen >= 6, "{seen} examples");
    Ok(())
}

#[test]
fn the_quick_example_pages_posts_and_their_comments() -> Result<()> {
    for file in ["blog.json", "blog_resolve.json"] {
        let cfg = load(file)?;
        ensure!(
            matches!(cfg.client.auth, Some(AuthConfig::Bearer(_))),
            "{file}: `auth = {{ token }}` is a bearer token, as in dlt"
        );
        let posts = cfg.resource("posts").context("posts")?;
        ensure!(posts.endpoint.path == "posts" && posts.parent.is_none());
        let comments = cfg.resource("comments").context("comments")?;
        ensure!(comments.parent.as_deref() == Some("posts"), "{file}");
        ensure!(
            comments.endpoint.path == "posts/{resources.posts.id}/comments",
            "{file}: {}",
            comments.endpoint.path
        );
        ensure!(
            comments
                .endpoint
                .params
                .keys()
                .map(String::as_str)
                .eq(["sort"]),
            "{file}: the resolve param fills the path and leaves the query"
        );
        ensure!(
            format!("{:?}", comments.endpoint.paginator).contains("paging.next"),
            "{file}: the client's json_link paginator applies"
        );
    }
    Ok(())
}

#[test]
fn github_issues_comments_and_incremental() -> Result<()> {
    let cfg = load("github.json")?;
    let comments = cfg.resource("comments").context("comments")?;
    ensure!(comments.parent.as_deref() == Some("issues"));
    ensure!(comments.include_from_parent == ["number"]);
    // dlt appends by default.
    ensure!(comments.write_disposition == WriteDisposition::Append);

    let cfg = load("github_incremental.json")?;
    let issues = cfg.resource("issues").context("issues")?;
    let inc = issues
        .endpoint
        .incremental
        .as_ref()
        .context("incremental")?;
    ensure!(inc.cursor_path == "updated_at");
    ensure!(inc.start_param.as_deref() == Some("since"));
    ensure!(issues.write_disposition == WriteDisposition::Merge);
    ensure!(!issues.endpoint.params.contains_key("since"));
    ensure!(issues.endpoint.params.contains_key("per_page"));
    Ok(())
}

#[test]
fn pokemon_resources_are_bare_names_without_keys() -> Result<()> {
    let cfg = load("pokemon.json")?;
    let names: Vec<&str> = cfg.resources.iter().map(|r| r.name.as_str()).collect();
    ensure!(names == ["pokemon", "berry", "location"]);
    for r in &cfg.resources {
        ensure!(r.primary_key.is_empty() && r.endpoint.params.contains_key("limit"));
    }
    let cfg = load("pokemon_dlt_yml.yaml")?;
    let enc = cfg
        .resource("encounter_conditions")
        .context("encounter_conditions")?;
    ensure!(enc.endpoint.path == "encounter-conditions");
    ensure!(enc.endpoint.incremental.is_some() && enc.primary_key == ["name"]);
    Ok(())
}
