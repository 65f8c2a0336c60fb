//! Schemas of the bodies no handler has a type for: the partner envelope
//! (read field by field as raw JSON, `partner.rs`), the users API bodies
//! (read as a `serde_json::Value` and judged object by object,
//! `users.rs`), and every answer built with `json!` or written by hand.
//!
//! These types are never built: they exist to derive `utoipa::ToSchema`,
//! so the document says what the handlers do. Nothing ties them to the
//! handlers at compile time; `tests/openapi.rs` does, by sending the
//! documented examples and validating the real answers against them.
//! Field names and shapes follow SPEC §2–§6 and §10; the doc comments are
//! the descriptions readers see in `/docs`.

use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

// ---- errors -------------------------------------------------------------

/// The error body of every endpoint except the partner ones (`src/error.rs`).
#[derive(ToSchema)]
#[schema(example = json!({"code": "unauthorized", "message": "missing or invalid bearer token"}))]
pub struct ApiError {
    /// Stable, machine-readable: `unauthorized`, `not_found`,
    /// `invalid_json`, `invalid_filter`, `limit_exceeded`,
    /// `payload_too_large`, `saturated`, `workspace_saturated`,
    /// `read_pool_busy`, `cursor_expired`, … Branch on this.
    pub code: String,
    /// What went wrong, for people; may change between versions.
    pub message: String,
}

/// The error body of the partner cohort import endpoints: Braze's exact
/// texts, which partner clients and support staff key on (SPEC §2).
#[derive(ToSchema)]
#[schema(example = json!({"message": "Invalid client secret"}))]
pub struct PartnerError {
    /// `Invalid Partner API key`, `Invalid client secret`, `Partner not
    /// enabled for client with client secret: <client_secret>`,
    /// `cohort_id must be a valid string`, `name must be a non-empty
    /// string`, `created_at must be a valid time as an ISO-8601 string`,
    /// `cohort_changes must be an array of objects each with key user_ids
    /// and/or device_ids mapping to an array of strings, or an aliases
    /// object`, `Only 1,000 user_ids, device_ids, and aliases are allowed
    /// per request`, `rate limit exceeded`, or another text naming the
    /// problem.
    pub message: String,
}

// ---- partner cohort import (SPEC §2) -------------------------------------

/// `POST /partners/{partner}/cohorts`: create a cohort, or rename it.
/// Authentication is in the body: `partner_api_key` and `client_secret`.
#[derive(ToSchema)]
pub struct CohortNameRequest {
    /// The partner's API key (operator config, `COHORTD_PARTNER_KEY_<PARTNER>`).
    pub partner_api_key: String,
    /// A live data import key of the workspace, generated for this partner
    /// (`POST /technology_partners/{partner}/data_import_keys`). It picks
    /// the workspace.
    pub client_secret: String,
    /// The partner's id for the cohort; unique per workspace and partner.
    #[schema(min_length = 1)]
    pub cohort_id: String,
    /// The cohort's name; a later call renames it.
    #[schema(min_length = 1)]
    pub name: String,
    /// ISO-8601, with or without fractional seconds, `Z` or an offset
    /// (`2022-12-01T17:40:04.055Z`, `2021-01-21T19:20:30+05:00`). The first
    /// value seen is kept.
    pub created_at: String,
}

/// `POST /partners/{partner}/cohorts/users`: a delta of the cohort.
/// Authentication is in the body: `partner_api_key` and `client_secret`.
#[derive(ToSchema)]
pub struct CohortUsersRequest {
    /// The partner's API key (operator config).
    pub partner_api_key: String,
    /// A live data import key of the workspace, generated for this partner.
    pub client_secret: String,
    #[schema(min_length = 1)]
    pub cohort_id: String,
    /// Applied in order; the later operation wins for a user named twice.
    /// At most 1,000 identifiers over all changes, counted raw. Empty is
    /// valid and changes nothing (a connection test).
    #[schema(value_type = Vec<crate::http::partner::ChangeWire>)]
    pub cohort_changes: Value,
}

/// The answer to a cohort name call.
#[derive(ToSchema)]
#[schema(example = json!({"message": "success"}))]
pub struct PartnerSuccess {
    /// `success`.
    pub message: String,
}

/// The answer to a delta: Braze's `{"message": "success"}`, with counts.
#[derive(ToSchema)]
#[schema(example = json!({"message": "success", "added": 1, "removed": 0, "unmatched": 1, "cohort_size": 1}))]
pub struct CohortUsersResponse {
    /// `success`.
    pub message: String,
    /// Profiles that entered the cohort (net, for this request).
    pub added: u64,
    /// Profiles that left the cohort (net, for this request).
    pub removed: u64,
    /// Distinct identifiers that matched no profile (ignored).
    pub unmatched: u64,
    /// The cohort's size after the delta.
    pub cohort_size: u64,
}

// ---- users API (SPEC §3) -------------------------------------------------

/// An alias: `{alias_name, alias_label}`.
#[derive(ToSchema)]
pub struct UserAlias {
    #[schema(min_length = 1)]
    pub alias_name: String,
    #[schema(min_length = 1)]
    pub alias_label: String,
}

/// A location, in `current_location`.
#[derive(ToSchema)]
pub struct Location {
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: f64,
}

/// One `attributes` object: which profile, then any custom attributes.
///
/// Give one identifier: `external_id`, `user_alias`, `device_id`
/// (an anonymous profile, the SDK extension) or `braze_id` (`external_id`
/// may come with a `braze_id` naming the same profile); with none of
/// them, `email`, else `phone`. Every other key is a custom attribute:
/// a string, number, boolean, ISO-8601 time, array of strings, nested
/// object or array of objects (filterable by dotted path), `{"inc": n}`,
/// `{"add": [..], "remove": [..]}`; `null` removes it.
#[derive(ToSchema)]
pub struct TrackAttributes {
    pub external_id: Option<String>,
    pub user_alias: Option<UserAlias>,
    pub device_id: Option<String>,
    /// cohortd's stable id of the profile (24 hex digits, as listed).
    pub braze_id: Option<String>,
    /// An identifier when nothing else is given; otherwise an attribute.
    pub email: Option<String>,
    /// E.164; an identifier when nothing else is given.
    pub phone: Option<String>,
    /// Default false for `external_id`, `email` and `phone` (a missing
    /// profile is created), true for `user_alias`.
    pub _update_existing_only: Option<bool>,
    /// A location, or `null` to remove it.
    pub current_location: Option<Location>,
}

/// One `events` object: a custom event (updates its count, first and
/// last time).
#[derive(ToSchema)]
pub struct TrackEvent {
    pub external_id: Option<String>,
    pub user_alias: Option<UserAlias>,
    pub device_id: Option<String>,
    pub braze_id: Option<String>,
    #[schema(min_length = 1)]
    pub name: String,
    /// ISO-8601.
    pub time: String,
    /// At most 50 KB of JSON; in the change feed as `custom_properties`.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
}

/// One `purchases` object (stored as the `purchase` event).
#[derive(ToSchema)]
pub struct TrackPurchase {
    pub external_id: Option<String>,
    pub user_alias: Option<UserAlias>,
    pub device_id: Option<String>,
    pub braze_id: Option<String>,
    #[schema(min_length = 1)]
    pub product_id: String,
    /// ISO 4217, three letters.
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    pub price: f64,
    /// ISO-8601.
    pub time: String,
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
}

/// `POST /users/track`. At least one array with something in it; at most
/// 75 objects in each. Applied attributes, then events, then purchases.
#[derive(ToSchema)]
pub struct TrackRequest {
    #[schema(max_items = 75)]
    pub attributes: Option<Vec<TrackAttributes>>,
    #[schema(max_items = 75)]
    pub events: Option<Vec<TrackEvent>>,
    #[schema(max_items = 75)]
    pub purchases: Option<Vec<TrackPurchase>>,
}

/// An object of the request that was not applied (the others were).
#[derive(ToSchema)]
#[schema(example = json!({"type": "external_id: must be a non-empty string", "input_array": "attributes", "index": 1}))]
pub struct ObjectError {
    /// What is wrong with it, naming the field.
    #[schema(rename = "type")]
    pub kind: String,
    /// The request array it is in: `attributes`, `events`, `purchases`,
    /// `aliases_to_identify`, `devices_to_identify`, `user_aliases`,
    /// `external_ids`, `device_ids`, `braze_ids`, `email_addresses`,
    /// `phone_numbers`.
    pub input_array: String,
    /// Its index in that array.
    pub index: u64,
}

/// The answer to `/users/track`.
#[derive(ToSchema)]
pub struct TrackResponse {
    /// `success`.
    pub message: String,
    pub attributes_processed: u64,
    pub events_processed: u64,
    pub purchases_processed: u64,
    pub errors: Vec<ObjectError>,
}

/// An alias-only profile to identify as, or merge into, `external_id`.
#[derive(ToSchema)]
pub struct AliasToIdentify {
    pub external_id: String,
    pub user_alias: UserAlias,
}

/// An anonymous device profile to identify (a login).
#[derive(ToSchema)]
pub struct DeviceToIdentify {
    pub external_id: String,
    pub device_id: String,
}

/// `POST /users/identify`: at least one entry, at most 50 per array.
#[derive(ToSchema)]
pub struct IdentifyRequest {
    #[schema(max_items = 50)]
    pub aliases_to_identify: Option<Vec<AliasToIdentify>>,
    #[schema(max_items = 50)]
    pub devices_to_identify: Option<Vec<DeviceToIdentify>>,
}

/// The answer to `/users/identify`.
#[derive(ToSchema)]
pub struct IdentifyResponse {
    /// `success`.
    pub message: String,
    pub aliases_processed: u64,
    pub devices_processed: u64,
    /// Profiles merged into another.
    pub merged: u64,
    pub errors: Vec<ObjectError>,
}

/// An alias to add to the profile `external_id` names (or, without
/// `external_id`, a new alias-only profile).
#[derive(ToSchema)]
pub struct NewAlias {
    pub external_id: Option<String>,
    #[schema(min_length = 1)]
    pub alias_name: String,
    #[schema(min_length = 1)]
    pub alias_label: String,
}

/// `POST /users/alias/new`: 1 to 50 aliases.
#[derive(ToSchema)]
pub struct AliasNewRequest {
    #[schema(min_items = 1, max_items = 50)]
    pub user_aliases: Vec<NewAlias>,
}

/// The answer to `/users/alias/new`.
#[derive(ToSchema)]
pub struct AliasNewResponse {
    /// `success`.
    pub message: String,
    pub aliases_processed: u64,
    pub errors: Vec<ObjectError>,
}

/// `POST /users/delete`: at least one identifier, at most 50 per array.
#[derive(ToSchema)]
pub struct DeleteRequest {
    #[schema(max_items = 50)]
    pub external_ids: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub user_aliases: Option<Vec<UserAlias>>,
    #[schema(max_items = 50)]
    pub device_ids: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub braze_ids: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub email_addresses: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub phone_numbers: Option<Vec<String>>,
}

/// The answer to `/users/delete`.
#[derive(ToSchema)]
pub struct DeleteResponse {
    /// `success`.
    pub message: String,
    /// Profiles deleted: they left every cohort and segment.
    pub deleted: u64,
    pub errors: Vec<ObjectError>,
}

/// `POST /users/export/ids`: up to 50 `external_ids` and 50
/// `user_aliases`, at most one each of `device_id`, `braze_id`,
/// `email_address` and `phone`; `fields_to_export` picks the fields
/// (default: all). Unknown keys are a 400.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    #[schema(max_items = 50)]
    pub external_ids: Option<Vec<String>>,
    #[schema(max_items = 50)]
    pub user_aliases: Option<Vec<UserAlias>>,
    pub device_id: Option<String>,
    pub braze_id: Option<String>,
    pub email_address: Option<String>,
    pub phone: Option<String>,
    /// `external_id`, `user_aliases`, `braze_id`, `devices`,
    /// `custom_attributes`, `custom_events`, `last_coordinates`, or a
    /// standard attribute (`first_name`, `last_name`, `email`, `phone`,
    /// `dob`, `country`, `home_city`, `language`, `gender`, `time_zone`,
    /// `email_subscribe`, `push_subscribe`).
    pub fields_to_export: Option<Vec<String>>,
}

/// A custom event's statistics in an export.
#[derive(ToSchema)]
pub struct ExportedEvent {
    pub name: String,
    #[schema(format = DateTime)]
    pub first: String,
    #[schema(format = DateTime)]
    pub last: String,
    pub count: u64,
}

/// A device in an export: its id only.
#[derive(ToSchema)]
pub struct ExportedDevice {
    pub device_id: String,
}

/// One profile as the export lists it; fields without a value are left
/// out, and `fields_to_export` keeps only those named. Standard
/// attributes (`first_name`, `email`, …) are top-level fields.
#[derive(ToSchema)]
pub struct ExportedUser {
    #[schema(nullable = false)]
    pub external_id: Option<String>,
    #[schema(nullable = false)]
    pub user_aliases: Option<Vec<UserAlias>>,
    #[schema(nullable = false)]
    pub braze_id: Option<String>,
    #[schema(nullable = false)]
    pub devices: Option<Vec<ExportedDevice>>,
    /// Every attribute that is not a standard one.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub custom_attributes: Option<Value>,
    /// Purchases are the `purchase` event.
    #[schema(nullable = false)]
    pub custom_events: Option<Vec<ExportedEvent>>,
    /// `current_location` as `[longitude, latitude]`.
    #[schema(nullable = false)]
    pub last_coordinates: Option<Vec<f64>>,
}

/// The answer to `/users/export/ids`.
#[derive(ToSchema)]
pub struct ExportResponse {
    /// `success`.
    pub message: String,
    /// Each profile found once, in request order.
    pub users: Vec<ExportedUser>,
    /// The identifiers that named no profile, as given (absent when none).
    #[schema(value_type = Option<Vec<Value>>, nullable = false)]
    pub invalid_user_ids: Option<Value>,
}

// ---- queries (SPEC §4) -------------------------------------------------

/// A profile, wherever one is listed: its `braze_id`, and how it is
/// listed: by `external_id` if it has one, else its first alias
/// (`user_alias`), else its first `device_id` (or its `email` or `phone`).
#[derive(ToSchema)]
#[schema(example = json!({"braze_id": "000000010000000000000000", "external_id": "u1"}))]
pub struct Member {
    /// cohortd's stable id of the profile: 8 hex digits of the workspace,
    /// 16 of the profile.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub braze_id: String,
    #[schema(nullable = false)]
    pub external_id: Option<String>,
    #[schema(nullable = false)]
    pub user_alias: Option<UserAlias>,
    #[schema(nullable = false)]
    pub device_id: Option<String>,
    #[schema(nullable = false)]
    pub email: Option<String>,
    #[schema(nullable = false)]
    pub phone: Option<String>,
}

/// A page of members. Pass `next_cursor` as `cursor` for the next page;
/// `null` on the last. A cursor is a position, never an offset.
#[derive(ToSchema)]
pub struct MemberPage {
    pub members: Vec<Member>,
    pub next_cursor: Option<String>,
}

/// A cohort, with its live size.
#[derive(ToSchema)]
#[schema(example = json!({"partner": "segment", "cohort_id": "aud_1", "name": "Big spenders",
    "created_at": "2026-11-24T05:14:36.000Z", "updated_at": "2026-11-24T05:20:00.000Z", "size": 1}))]
pub struct Cohort {
    pub partner: String,
    pub cohort_id: String,
    pub name: String,
    /// The first name call's `created_at` (or when a delta created it).
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub size: u64,
}

/// A page of cohorts, by (partner, cohort_id).
#[derive(ToSchema)]
pub struct CohortPage {
    pub cohorts: Vec<Cohort>,
    pub next_cursor: Option<String>,
}

/// One delta with identifiers, as a partner's import status screen
/// shows it.
#[derive(ToSchema)]
pub struct ImportRecord {
    #[schema(format = DateTime)]
    pub at: String,
    /// Net membership changes of the delta.
    pub added: u64,
    pub removed: u64,
    /// Distinct identifiers that matched no profile.
    pub unmatched: u64,
    /// The cohort's size after it.
    pub size: u64,
}

/// A cohort's import history, newest first.
#[derive(ToSchema)]
pub struct ImportHistory {
    pub imports: Vec<ImportRecord>,
}

/// A segment filter: a JSON object with exactly one key, nested freely
/// (at most 32 levels). Unknown keys and `null` values are refused.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Filter {
    And(AndFilter),
    Or(OrFilter),
    Not(NotFilter),
    All(AllFilter),
    Cohort(CohortFilter),
    Attribute(AttributeFilter),
    Event(EventFilter),
}

/// Every filter holds.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AndFilter {
    #[schema(no_recursion, min_items = 1)]
    pub and: Vec<Filter>,
}

/// Some filter holds.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrFilter {
    #[schema(no_recursion, min_items = 1)]
    pub or: Vec<Filter>,
}

/// The filter does not hold (over the workspace's live profiles).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotFilter {
    #[schema(no_recursion)]
    pub not: Box<Filter>,
}

/// Every live profile (`true` only; "no one" is `{"not": {"all": true}}`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllFilter {
    pub all: bool,
}

/// Member of that cohort (which must exist).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortFilter {
    pub cohort: CohortCondition,
}

/// A custom attribute, by name or dotted path (`address.city`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeFilter {
    pub attribute: AttributeCondition,
}

/// A custom event's count or last time.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    pub event: EventCondition,
}

/// `{"partner", "cohort_id"}` of an existing cohort.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CohortCondition {
    #[schema(min_length = 1)]
    pub partner: String,
    #[schema(min_length = 1)]
    pub cohort_id: String,
}

/// An attribute comparison. On a profile without the attribute every
/// comparison is false except `does_not_exist`, `not_equals` and
/// `does_not_match_regex`.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum AttributeCondition {
    Equals(AttributeEquals),
    Regex(AttributeRegex),
    Exists(AttributeExists),
    Compare(AttributeCompare),
    Includes(AttributeIncludes),
    WithinKm(AttributeWithinKm),
}

/// Case-sensitive equality (numbers numerically: `3` equals `3.0`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeEquals {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: EqualsOp,
    pub value: Scalar,
}

/// A case-insensitive regex search, unanchored (`^…$` for a full match).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeRegex {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: RegexOp,
    pub value: String,
}

/// Whether the profile has the attribute: no `value`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeExists {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: ExistsOp,
}

/// Strict, with a number against numbers, or an ISO-8601 time against
/// time attributes.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeCompare {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: CompareOp,
    pub value: NumberOrTime,
}

/// An array attribute holds the string (case-sensitive).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeIncludes {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: IncludesOp,
    pub value: String,
}

/// A location attribute (`current_location`) within `km` of the point.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeWithinKm {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: WithinKmOp,
    pub value: GeoRadius,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EqualsOp {
    Equals,
    NotEquals,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegexOp {
    MatchesRegex,
    DoesNotMatchRegex,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExistsOp {
    Exists,
    DoesNotExist,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    GreaterThan,
    LessThan,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncludesOp {
    IncludesValue,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithinKmOp {
    WithinKm,
}

/// A string, number or boolean.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
}

/// A number, or an ISO-8601 time.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum NumberOrTime {
    Number(f64),
    Time(String),
}

/// A point and a radius.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GeoRadius {
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: f64,
    /// Above 0, at most 20,037.5.
    #[schema(exclusive_minimum = 0, maximum = 20037.5)]
    pub km: f64,
}

/// An event condition. A profile that never did the event has count 0;
/// the time ops are strict and false for it.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum EventCondition {
    Count(EventCount),
    Time(EventTime),
}

/// How many times the profile did the event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCount {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: CountOp,
    pub count: u64,
}

/// When the profile last did the event.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    #[schema(min_length = 1)]
    pub name: String,
    pub op: TimeOp,
    /// ISO-8601.
    pub time: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CountOp {
    MoreThan,
    LessThan,
    Exactly,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeOp {
    LastPerformedAfter,
    LastPerformedBefore,
}

/// The answer to `POST /segments`.
#[derive(ToSchema)]
#[schema(example = json!({"segment_id": "seg_1"}))]
pub struct SegmentCreated {
    pub segment_id: String,
}

/// A saved segment.
#[derive(ToSchema)]
pub struct Segment {
    pub segment_id: String,
    pub name: String,
    pub filter: Filter,
}

/// A page of saved segments, by id.
#[derive(ToSchema)]
pub struct SegmentPage {
    pub segments: Vec<Segment>,
    pub next_cursor: Option<String>,
}

/// The answer to `DELETE /segments/{id}`.
#[derive(ToSchema)]
pub struct SegmentDeleted {
    /// `success`.
    pub message: String,
    pub segment_id: String,
}

/// A live count.
#[derive(ToSchema)]
#[schema(example = json!({"count": 1}))]
pub struct Count {
    pub count: u64,
}

/// One answer of a membership check.
#[derive(ToSchema)]
pub struct MembershipResult {
    /// False too for an identifier that matches no profile.
    pub member: bool,
}

/// The answer to a membership check, in request order.
#[derive(ToSchema)]
pub struct MembershipResults {
    pub results: Vec<MembershipResult>,
}

/// A preview: the live count and a sample.
#[derive(ToSchema)]
pub struct Preview {
    pub count: u64,
    pub sample: Vec<Member>,
}

/// A cohort a user is in.
#[derive(ToSchema)]
pub struct CohortOfUser {
    pub partner: String,
    pub cohort_id: String,
    pub name: String,
}

/// A saved segment a user is in.
#[derive(ToSchema)]
pub struct SegmentOfUser {
    pub segment_id: String,
    pub name: String,
}

/// The cohorts and saved segments one user is in.
#[derive(ToSchema)]
pub struct UserMemberships {
    pub cohorts: Vec<CohortOfUser>,
    pub segments: Vec<SegmentOfUser>,
}

// ---- technology partners and keys (SPEC §5) -----------------------------

/// A data import key as listed: masked.
#[derive(ToSchema)]
pub struct DataImportKeyInfo {
    pub key_id: String,
    /// The key's ends only.
    pub masked_key: String,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A partner the workspace can connect.
#[derive(ToSchema)]
pub struct TechnologyPartner {
    pub partner: String,
    /// The base URL to give the partner: this server as the client
    /// reached it.
    pub rest_endpoint: String,
    /// Live keys, masked.
    pub data_import_keys: Vec<DataImportKeyInfo>,
}

/// Every partner, with its keys.
#[derive(ToSchema)]
pub struct TechnologyPartners {
    pub technology_partners: Vec<TechnologyPartner>,
}

/// A new data import key: the full value is shown only here.
#[derive(ToSchema)]
#[schema(example = json!({"key_id": "3cb63ec41590cb48",
    "data_import_key": "cdik_98518623e9acc6d027f79748504825800477daafd8469232aedcdda34d1dbb4b",
    "rest_endpoint": "http://127.0.0.1:8080"}))]
pub struct NewDataImportKey {
    pub key_id: String,
    /// The `client_secret` the partner sends.
    pub data_import_key: String,
    pub rest_endpoint: String,
}

/// The answer to invalidating a key.
#[derive(ToSchema)]
pub struct KeyRevoked {
    /// `success`.
    pub message: String,
    pub key_id: String,
}

// ---- operators (SPEC §6) ------------------------------------------------

/// A new workspace and its REST API key (shown only here).
#[derive(ToSchema)]
#[schema(example = json!({"workspace_id": "ws_1",
    "rest_api_key": "crk_26b333021f420bc5092c81eee0ff0c1d73ce984bc68f45f5bc908bdc3b5c0d5c"}))]
pub struct WorkspaceCreated {
    pub workspace_id: String,
    pub rest_api_key: String,
}

/// A workspace, with its figures.
#[derive(ToSchema)]
pub struct WorkspaceInfo {
    pub workspace_id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub profiles: u64,
    pub cohorts: u64,
}

/// Every workspace.
#[derive(ToSchema)]
pub struct Workspaces {
    pub workspaces: Vec<WorkspaceInfo>,
}

/// A durable snapshot file.
#[derive(ToSchema)]
#[schema(example = json!({"snapshot_id": "snap-00000000000000000008-1796306505313",
    "created_at": "2026-12-03T14:01:45.313Z", "bytes": 637, "log_position": 8}))]
pub struct Snapshot {
    pub snapshot_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub bytes: u64,
    /// The write-ahead log position it holds everything up to.
    pub log_position: u64,
}

/// The snapshots on disk, newest first.
#[derive(ToSchema)]
pub struct Snapshots {
    pub snapshots: Vec<Snapshot>,
}

/// The answer to a restore: the snapshot taken right after it, the new
/// starting point.
#[derive(ToSchema)]
pub struct Restored {
    /// `success`.
    pub message: String,
    /// The snapshot restored.
    pub restored: String,
    pub snapshot: Snapshot,
}

/// `{"status": …}` of a probe.
#[derive(ToSchema)]
pub struct Status {
    /// `ok` (`/healthz`), `ready` or `recovering` (`/readyz`).
    pub status: String,
}

// ---- change feed and connectors (SPEC §10) ------------------------------

/// Who an event is about; absent identifiers are left out.
#[derive(ToSchema)]
pub struct EventUser {
    /// The profile's braze_id.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub user_id: String,
    #[schema(nullable = false)]
    pub external_user_id: Option<String>,
    #[schema(nullable = false)]
    pub device_id: Option<String>,
}

#[derive(ToSchema)]
pub struct CustomEventProperties {
    pub name: String,
    #[schema(value_type = Option<Object>, nullable = false)]
    pub custom_properties: Option<Value>,
}

#[derive(ToSchema)]
pub struct PurchaseProperties {
    pub product_id: String,
    pub currency: String,
    pub price: f64,
    #[schema(value_type = Option<Object>, nullable = false)]
    pub purchase_properties: Option<Value>,
}

#[derive(ToSchema)]
pub struct OrphanProperties {
    /// The braze_id the profile was merged into.
    #[schema(pattern = "^[0-9a-f]{24}$")]
    pub orphaned_by_id: String,
}

#[derive(ToSchema)]
pub struct CohortEventProperties {
    pub partner: String,
    pub cohort_id: String,
    pub name: String,
}

#[derive(ToSchema)]
pub struct SegmentEventProperties {
    pub segment_id: String,
    pub name: String,
}

/// A change feed event, Braze Currents style (also what connectors POST,
/// `{"events": [...]}`). Consumers must tolerate fields they do not know.
/// The same shapes as JSON Schema: `docs/schemas/currents-events.schema.json`.
#[derive(ToSchema)]
#[serde(tag = "event_type")]
pub enum FeedEvent {
    #[serde(rename = "users.behaviors.CustomEvent")]
    CustomEvent {
        /// Stable and unique.
        id: String,
        /// Unix seconds.
        time: i64,
        user: EventUser,
        properties: CustomEventProperties,
    },
    #[serde(rename = "users.behaviors.Purchase")]
    Purchase {
        id: String,
        time: i64,
        user: EventUser,
        properties: PurchaseProperties,
    },
    #[serde(rename = "users.UserOrphan")]
    UserOrphan {
        id: String,
        time: i64,
        user: EventUser,
        properties: OrphanProperties,
    },
    #[serde(rename = "users.UserDeleteRequest")]
    UserDeleteRequest {
        id: String,
        time: i64,
        user: EventUser,
        #[schema(value_type = Object)]
        properties: Value,
    },
    #[serde(rename = "users.cohorts.Entered")]
    CohortEntered {
        id: String,
        time: i64,
        user: EventUser,
        properties: CohortEventProperties,
    },
    #[serde(rename = "users.cohorts.Exited")]
    CohortExited {
        id: String,
        time: i64,
        user: EventUser,
        properties: CohortEventProperties,
    },
    #[serde(rename = "users.segments.Entered")]
    SegmentEntered {
        id: String,
        time: i64,
        user: EventUser,
        properties: SegmentEventProperties,
    },
    #[serde(rename = "users.segments.Exited")]
    SegmentExited {
        id: String,
        time: i64,
        user: EventUser,
        properties: SegmentEventProperties,
    },
}

/// A page of the change feed. Pass `next_cursor` as `after` for what
/// follows (it is there even when `events` is empty).
#[derive(ToSchema)]
pub struct FeedPage {
    pub events: Vec<FeedEvent>,
    pub next_cursor: String,
}

/// A connector's state.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    Active,
    /// Failing for `connectors.disable_after_secs`; `last_error` says why.
    Disabled,
}

/// A connector (its bearer token is never shown again).
#[derive(ToSchema)]
pub struct Connector {
    /// `conn_` and 32 hex digits.
    pub connector_id: String,
    pub name: String,
    pub url: String,
    /// What it sends (every type when created without `event_types`).
    pub event_types: Vec<String>,
    /// Whether it has a bearer token (an extension).
    pub bearer_token: bool,
    pub state: ConnectorState,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// The workspace's connectors.
#[derive(ToSchema)]
pub struct Connectors {
    pub connectors: Vec<Connector>,
}

/// A connector with its delivery figures.
#[derive(ToSchema)]
pub struct ConnectorStatus {
    pub connector_id: String,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub bearer_token: bool,
    pub state: ConnectorState,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Events delivered (acknowledged by a 2xx).
    pub sent: u64,
    /// Failed delivery attempts.
    pub failed: u64,
    /// Events passed over (not of its `event_types`).
    pub skipped: u64,
    /// Events of the feed not acknowledged yet.
    pub lag_events: u64,
    /// Age of the oldest of them.
    pub lag_seconds: u64,
    pub last_error: Option<String>,
    /// The feed cursor up to which it has delivered.
    pub acknowledged_cursor: String,
}

/// Every workspace's connectors (`cohortd connectors`).
#[derive(ToSchema)]
pub struct AdminConnectors {
    pub connectors: Vec<AdminConnector>,
}

/// A connector with its figures and its workspace.
#[derive(ToSchema)]
pub struct AdminConnector {
    #[schema(inline)]
    #[serde(flatten)]
    pub status: ConnectorStatus,
    pub workspace_id: String,
}

/// `{id}` of `/segments/{id}` and the routes below it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SegmentPath {
    /// The segment id (`seg_` and a number).
    #[param(example = "seg_1")]
    pub id: String,
}

/// `{id}` of `/connectors/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConnectorPath {
    /// The connector id.
    #[param(example = "conn_a15587489c71dd65db2971abd4c31af9")]
    pub id: String,
}

/// `{partner}/{cohort_id}` of `/cohorts/{partner}/{cohort_id}` and the
/// routes below it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CohortPath {
    /// The partner that pushed the cohort.
    #[param(example = "segment")]
    pub partner: String,
    /// The partner's cohort id.
    #[param(example = "aud_1")]
    pub cohort_id: String,
}

/// The header Segment's Braze destination sends on the users API
/// (`note_batch` in `users.rs`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct BrazeBatch {
    /// `true` from a client that batches many users per request (counted
    /// in metrics only).
    #[param(rename = "X-Braze-Batch")]
    pub braze_batch: Option<bool>,
}
