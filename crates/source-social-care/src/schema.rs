//! A council's social care reporting replica, as published (`replica-schema.sql`). Read-only.

diesel::table! {
    team (team_id) {
        team_id -> Text,
        name -> Text,
        service_area -> Text,
    }
}

diesel::table! {
    worker (worker_id) {
        worker_id -> Text,
        user_id -> Text,
        display_name -> Text,
        job_title -> Nullable<Text>,
        team_id -> Nullable<Text>,
    }
}

diesel::table! {
    person (person_id) {
        person_id -> Text,
        nhs_number -> Nullable<Text>,
        forename -> Text,
        surname -> Text,
        date_of_birth -> Nullable<Text>,
        gender -> Text,
        postcode -> Nullable<Text>,
        last_updated -> Text,
    }
}

diesel::table! {
    allocation (allocation_id) {
        allocation_id -> Text,
        person_id -> Text,
        worker_id -> Nullable<Text>,
        team_id -> Nullable<Text>,
        start_date -> Text,
        end_date -> Nullable<Text>,
    }
}

diesel::table! {
    alert (alert_id) {
        alert_id -> Text,
        person_id -> Text,
        category -> Text,
        title -> Text,
        detail -> Nullable<Text>,
        household -> Integer,
        start_date -> Text,
        end_date -> Nullable<Text>,
        created_by -> Nullable<Text>,
        last_updated -> Text,
    }
}
diesel::allow_tables_to_appear_in_same_query!(alert, person);
