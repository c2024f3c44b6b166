//! `PUT /doctors/me/profile` and `POST /doctors/me/submission`: the doctor's own
//! professional details and the request to have them verified.

use actix_web::{web, HttpRequest, HttpResponse};
use medflow_domain::availability::DoctorTimeZone;
use medflow_domain::doctor::{DoctorCommand, Language, ProfileDetails, Specialty, MAX_LANGUAGES};
use medflow_domain::values::{truncate, PersonName};
use medflow_domain::FieldError;
use medflow_infra::crypto::index::name_words;
use medflow_infra::web::auth::Authenticated;
use medflow_infra::web::json::{Field, JsonBody, JsonKind, RequestBody};
use medflow_infra::web::problem::Problem;
use medflow_infra::web::ApiError;
use serde::Deserialize;
use utoipa::ToSchema;

use super::doctors::{check_length, collect, execute, require_doctor, seal_text};
use super::CommandAccepted;
use crate::state::SharedState;

/// Minimum and maximum length of a license number, in characters.
pub const LICENSE_NUMBER_MIN_LEN: usize = 3;
pub const LICENSE_NUMBER_MAX_LEN: usize = 40;

/// Minimum and maximum length of the issuing authority's name, in characters.
pub const ISSUING_AUTHORITY_MIN_LEN: usize = 2;
pub const ISSUING_AUTHORITY_MAX_LEN: usize = 120;

/// Maximum length of a biography, in characters.
pub const BIOGRAPHY_MAX_LEN: usize = 2000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileRequest {
    /// Public name in the directory, 1 to 100 characters, such as "Dr. Amara Okafor".
    /// Stored encrypted.
    pub display_name: String,
    /// A specialty such as `cardiology`; an unknown value gets a problem that lists
    /// every accepted one.
    pub specialty: String,
    /// 3 to 40 characters: letters A to Z, digits, '-', '/', '.' and spaces. Stored
    /// encrypted. Changing it on a verified profile sends the profile back to review.
    pub license_number: String,
    /// Authority that issued the license, 2 to 120 characters, such as "General
    /// Medical Council". Changing it on a verified profile sends the profile back to
    /// review.
    pub issuing_authority: String,
    /// 0 to 2000 characters; line breaks and tabs are allowed. Stored encrypted.
    pub biography: String,
    /// IANA time zone name such as `Europe/Berlin`. Weekly availability is read in
    /// this zone.
    pub time_zone: String,
    /// 1 to 10 consultation languages as ISO 639-1 codes such as `en`, without
    /// duplicates.
    pub languages: Vec<String>,
}

impl RequestBody for ProfileRequest {
    const FIELDS: &'static [Field] = &[
        Field::sensitive("display_name", JsonKind::String),
        Field::required("specialty", JsonKind::String),
        Field::sensitive("license_number", JsonKind::String),
        Field::required("issuing_authority", JsonKind::String),
        Field::sensitive("biography", JsonKind::String),
        Field::required("time_zone", JsonKind::String),
        Field::required("languages", JsonKind::Array(&JsonKind::String)),
    ];
}

/// A profile request whose every field passed validation, before sealing.
pub struct ValidProfile {
    pub display_name: PersonName,
    pub specialty: Specialty,
    pub license_number: String,
    pub issuing_authority: String,
    pub biography: String,
    pub time_zone: DoctorTimeZone,
    pub languages: Vec<Language>,
}

/// Validates every field and reports all failures at once.
pub fn validate_profile(body: &ProfileRequest) -> Result<ValidProfile, ApiError> {
    let mut errors = Vec::new();
    let display_name = collect(parse_display_name(&body.display_name), &mut errors);
    let specialty = collect(Specialty::parse("specialty", &body.specialty), &mut errors);
    let license_number = collect(parse_license_number(&body.license_number), &mut errors);
    let issuing_authority = collect(
        parse_issuing_authority(&body.issuing_authority),
        &mut errors,
    );
    let biography = collect(parse_biography(&body.biography), &mut errors);
    let time_zone = collect(
        DoctorTimeZone::parse("time_zone", &body.time_zone),
        &mut errors,
    );
    let languages = match parse_languages(&body.languages) {
        Ok(languages) => Some(languages),
        Err(language_errors) => {
            errors.extend(language_errors);
            None
        }
    };
    let (
        Some(display_name),
        Some(specialty),
        Some(license_number),
        Some(issuing_authority),
        Some(biography),
        Some(time_zone),
        Some(languages),
    ) = (
        display_name,
        specialty,
        license_number,
        issuing_authority,
        biography,
        time_zone,
        languages,
    )
    else {
        return Err(ApiError::Validation(errors));
    };
    Ok(ValidProfile {
        display_name,
        specialty,
        license_number,
        issuing_authority,
        biography,
        time_zone,
        languages,
    })
}

/// Parses a display name: a person name with at least one word, so that the
/// directory's search by name can find it.
fn parse_display_name(raw: &str) -> Result<PersonName, FieldError> {
    let name = PersonName::parse("display_name", raw)?;
    if name_words(name.as_str()).is_empty() {
        return Err(FieldError::new(
            "display_name",
            "must contain at least one letter or digit",
        ));
    }
    Ok(name)
}

/// Trims a license number and checks its length and characters. Errors never repeat
/// the number, only the first character that is not allowed.
fn parse_license_number(raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    check_length(
        "license_number",
        trimmed,
        LICENSE_NUMBER_MIN_LEN,
        LICENSE_NUMBER_MAX_LEN,
    )?;
    let allowed = |character: char| {
        character.is_ascii_alphanumeric() || matches!(character, '-' | '/' | '.' | ' ')
    };
    if let Some(bad) = trimmed.chars().find(|character| !allowed(*character)) {
        return Err(FieldError::new(
            "license_number",
            format!(
                "contains the character {bad:?}, which is not allowed; use letters A to Z, \
                 digits, '-', '/', '.' and spaces"
            ),
        ));
    }
    if !trimmed
        .chars()
        .any(|character| character.is_ascii_alphanumeric())
    {
        return Err(FieldError::new(
            "license_number",
            "must contain at least one letter or digit",
        ));
    }
    Ok(trimmed.to_owned())
}

fn parse_issuing_authority(raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    check_length(
        "issuing_authority",
        trimmed,
        ISSUING_AUTHORITY_MIN_LEN,
        ISSUING_AUTHORITY_MAX_LEN,
    )?;
    if trimmed.chars().any(char::is_control) {
        return Err(FieldError::new(
            "issuing_authority",
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Trims a biography. Line breaks and tabs are its only allowed control characters.
fn parse_biography(raw: &str) -> Result<String, FieldError> {
    let trimmed = raw.trim();
    check_length("biography", trimmed, 0, BIOGRAPHY_MAX_LEN)?;
    let forbidden =
        |character: char| character.is_control() && !matches!(character, '\n' | '\r' | '\t');
    if trimmed.chars().any(forbidden) {
        return Err(FieldError::new(
            "biography",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Parses 1 to `MAX_LANGUAGES` language codes, naming each bad entry as `languages[i]`.
fn parse_languages(raw: &[String]) -> Result<Vec<Language>, Vec<FieldError>> {
    if raw.is_empty() {
        return Err(vec![FieldError::new(
            "languages",
            "must contain at least one ISO 639-1 language code, such as en",
        )]);
    }
    if raw.len() > MAX_LANGUAGES {
        return Err(vec![FieldError::new(
            "languages",
            format!(
                "contains {} languages, more than the maximum of {MAX_LANGUAGES}",
                raw.len()
            ),
        )]);
    }
    let mut languages: Vec<Language> = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    for (index, code) in raw.iter().enumerate() {
        let field = format!("languages[{index}]");
        match Language::parse(&field, code) {
            Ok(language) => match languages.iter().position(|seen| *seen == language) {
                Some(first) => errors.push(FieldError::new(
                    field,
                    format!(
                        "'{}' repeats languages[{first}]; list each language once",
                        truncate(code, 10)
                    ),
                )),
                None => languages.push(language),
            },
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(languages)
    } else {
        Err(errors)
    }
}

#[utoipa::path(
    put,
    path = "/doctors/me/profile",
    tag = "doctors",
    request_body = ProfileRequest,
    security(("session" = [])),
    responses(
        (status = 200, description = "Profile saved; the first save creates it as a draft. Changing the license number or issuing authority of a verified profile also returns it to review", body = CommandAccepted),
        (status = 400, description = "Body is not valid JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile is suspended, or a concurrent request changed it", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is missing or invalid; the problem names every one", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_profile(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
    body: JsonBody<ProfileRequest>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let profile = validate_profile(&body)?;
    let display_name = profile.display_name.as_str();
    let details = ProfileDetails {
        display_name: seal_text(&state, doctor, "doctor_display_name", display_name).await?,
        name_tokens: state.index.name_tokens(display_name),
        specialty: profile.specialty,
        license_number: seal_text(&state, doctor, "license_number", &profile.license_number)
            .await?,
        license_fingerprint: state.index.license_fingerprint(&profile.license_number),
        issuing_authority: profile.issuing_authority,
        biography: seal_text(&state, doctor, "biography", &profile.biography).await?,
        time_zone: profile.time_zone,
        languages: profile.languages,
    };
    let command = DoctorCommand::UpdateProfile { doctor, details };
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor profile saved");
    Ok(HttpResponse::Ok().json(CommandAccepted::from(committed)))
}

#[utoipa::path(
    post,
    path = "/doctors/me/submission",
    tag = "doctors",
    security(("session" = [])),
    responses(
        (status = 202, description = "Profile submitted for verification by an admin", body = CommandAccepted),
        (status = 401, description = "No live session", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Caller is not a doctor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The doctor has not saved a profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The profile has no license document yet, or is not a draft or rejected", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn submit(
    request: HttpRequest,
    auth: Authenticated,
    state: web::Data<SharedState>,
) -> Result<HttpResponse, ApiError> {
    let doctor = require_doctor(&auth)?;
    let command = DoctorCommand::SubmitForVerification;
    let committed = execute(&state, &request, &auth.session, doctor, command).await?;
    tracing::info!(doctor_id = %doctor, sequence = committed.sequence, "doctor profile submitted for verification");
    Ok(HttpResponse::Accepted().json(CommandAccepted::from(committed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn license_number_is_trimmed() {
        assert_eq!(
            parse_license_number("  GMC-123/45.6 A ").unwrap(),
            "GMC-123/45.6 A"
        );
    }

    #[test]
    fn license_number_rejects_other_characters() {
        let error = parse_license_number("GMC#123").unwrap_err();
        assert_eq!(error.field, "license_number");
        assert!(error.detail.contains("'#'"), "{}", error.detail);
        assert!(!error.detail.contains("GMC"), "{}", error.detail);
    }

    #[test]
    fn license_number_length_is_bounded() {
        assert!(parse_license_number("12").is_err());
        assert!(parse_license_number(&"1".repeat(41)).is_err());
        assert!(parse_license_number(&"1".repeat(40)).is_ok());
        assert!(parse_license_number("-/.").is_err());
    }

    #[test]
    fn biography_allows_line_breaks_only() {
        assert!(parse_biography("").is_ok());
        assert!(parse_biography("Line one.\r\n\tLine two.").is_ok());
        assert!(parse_biography("bell\u{7}").is_err());
        assert!(parse_biography(&"b".repeat(2001)).is_err());
    }

    #[test]
    fn display_name_needs_a_word() {
        assert!(parse_display_name("Dr. Amara Okafor").is_ok());
        let error = parse_display_name("-- !").unwrap_err();
        assert_eq!(error.field, "display_name");
    }

    #[test]
    fn languages_report_each_bad_entry() {
        let raw = ["en", "eng", "EN", "de"].map(String::from);
        let errors = parse_languages(&raw).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|error| error.field.as_str()).collect();
        assert_eq!(fields, ["languages[1]", "languages[2]"]);
        assert!(
            errors[1].detail.contains("repeats languages[0]"),
            "{}",
            errors[1].detail
        );
    }

    #[test]
    fn languages_count_is_bounded() {
        assert!(parse_languages(&[]).is_err());
        let eleven: Vec<String> = "abcdefghijk"
            .chars()
            .map(|letter| format!("{letter}{letter}"))
            .collect();
        let errors = parse_languages(&eleven).unwrap_err();
        assert_eq!(errors[0].field, "languages");
    }
}
