//! Rendering `templates/*.j2` from the charm dir with minijinja (Jinja syntax, as the Python
//! charm's templates), strict about undefined variables so a typo fails loudly in tests.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot render template {name}: {message}")]
    Render { name: String, message: String },
}

/// Render `<charm_dir>/templates/<name>.j2` with `ctx`.
pub fn render<S: serde::Serialize>(
    charm_dir: &Path,
    name: &str,
    ctx: S,
) -> Result<String, TemplateError> {
    let path = charm_dir.join("templates").join(format!("{name}.j2"));
    let source = std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    })?;
    render_str(name, &source, ctx)
}

/// Render a template given as text.
pub fn render_str<S: serde::Serialize>(
    name: &str,
    source: &str,
    ctx: S,
) -> Result<String, TemplateError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    let err = |e: minijinja::Error| TemplateError::Render {
        name: name.to_string(),
        message: e.to_string(),
    };
    env.add_template(name, source).map_err(err)?;
    env.get_template(name)
        .map_err(err)?
        .render(ctx)
        .map_err(err)
}
