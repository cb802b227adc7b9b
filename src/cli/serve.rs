use serde_json::json;

use super::{print_report, Report};
use crate::clock;
use crate::config::{Config, ServeArgs};
use crate::demo::{self, DemoSetup};
use crate::error::Error;
use crate::startup::{self, Application};

pub fn run(config: &Config, args: &ServeArgs, json: bool) -> Result<(), Error> {
    let store = startup::prepare_database(config)?;
    actix_web::rt::System::new().block_on(async move {
        let demo = if args.demo {
            let mut conn = store.background().conn().await?;
            Some(demo::bootstrap(&mut conn, clock::now()).await?)
        } else {
            None
        };
        let app = Application::build(config, store).await?;
        let report = startup_report(&app, config, demo.as_ref());
        print_report(&report, json);
        app.run_until_stopped()
            .await
            .map_err(|e| Error::Internal(format!("the server stopped with an error: {e}")))
    })
}

fn startup_report(app: &Application, config: &Config, demo: Option<&Option<DemoSetup>>) -> Report {
    let issuer = app.issuer();
    let mut json = json!({
        "status": "serving",
        "listen": config.listen,
        "port": app.port(),
        "issuer": issuer,
        "database": config.database_url.backend_name(),
    });
    let mut human = format!(
        "Keyframe is serving {issuer} (listening on {}, {} database).\n",
        config.listen,
        config.database_url.backend_name()
    );
    match demo {
        Some(Some(setup)) => {
            let command = format!(
                "curl -s -u '{}:{}' -d grant_type=password -d username={} -d 'password={}' {issuer}/oauth/token",
                setup.client_id,
                setup.client_secret.expose(),
                demo::USERNAME,
                setup.password.expose()
            );
            json["demo"] = json!({
                "tenant": demo::TENANT,
                "username": demo::USERNAME,
                "password": setup.password.expose(),
                "client_id": setup.client_id,
                "client_secret": setup.client_secret.expose(),
                "token_command": command,
            });
            human.push_str(&format!(
                "\nDemo data created. These secrets are shown once: copy them now.\n  \
                 tenant:        {}\n  username:      {}\n  password:      {}\n  \
                 client_id:     {}\n  client_secret: {}\n\nGet a token:\n  {command}\n",
                demo::TENANT,
                demo::USERNAME,
                setup.password.expose(),
                setup.client_id,
                setup.client_secret.expose(),
            ));
        }
        Some(None) => {
            json["demo"] = json!(null);
            human.push_str("--demo: the database already has data, so no demo data was created.\n");
        }
        None => {}
    }
    Report { json, human }
}
