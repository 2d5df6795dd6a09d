//! Rows of the social care replica as the facade reads them.

use diesel::prelude::*;

use crate::schema::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = person)]
pub struct PersonRow {
    pub person_id: String,
    pub nhs_number: Option<String>,
    pub forename: String,
    pub surname: String,
    pub date_of_birth: Option<String>,
    pub gender: String,
    pub postcode: Option<String>,
    pub last_updated: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = allocation)]
pub struct AllocationRow {
    pub allocation_id: String,
    pub person_id: String,
    pub worker_id: Option<String>,
    pub team_id: Option<String>,
    pub start_date: String,
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alert)]
pub struct AlertRow {
    pub alert_id: String,
    pub person_id: String,
    pub category: String,
    pub title: String,
    pub detail: Option<String>,
    pub household: i32,
    pub start_date: String,
    pub end_date: Option<String>,
    pub created_by: Option<String>,
    pub last_updated: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = worker)]
pub struct WorkerRow {
    pub worker_id: String,
    pub user_id: String,
    pub display_name: String,
    pub job_title: Option<String>,
    pub team_id: Option<String>,
}
