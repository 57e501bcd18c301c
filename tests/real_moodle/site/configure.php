<?php
// Configures a freshly installed Moodle 4.5 like the site the recordings were made on
// (tests/fixtures/moodle-4.5/README.md), through Moodle's own APIs. Run once after
// admin/cli/install_database.php; prints one JSON object (ids and the integration token).
//
// Usage: php configure.php --functions=a,b,c
//
// It is the project's test fixture, not a deployment tool: passwords are fixed test values.

define('CLI_SCRIPT', true);

$moodleroot = getenv('MENTORSYNC_TEST_MOODLE_ROOT');
if (!$moodleroot) {
    fwrite(STDERR, "MENTORSYNC_TEST_MOODLE_ROOT is not set\n");
    exit(2);
}
require($moodleroot . '/config.php');
require_once($CFG->libdir . '/clilib.php');
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/user/profile/definelib.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/completion/criteria/completion_criteria.php');
require_once($CFG->libdir . '/completionlib.php');

[$options, $unrecognised] = cli_get_params(['functions' => ''], []);
$functions = array_values(array_filter(explode(',', $options['functions'])));

\core\session\manager::set_user(get_admin());
global $DB;

// --- site settings ---------------------------------------------------------------------------
set_config('enablewebservices', 1);
set_config('webserviceprotocols', 'rest');
set_config('enablecompletion', 1);
set_config('debug', 0);
set_config('debugdisplay', 0);
// A test site should never try the network for updates, or notifications.
set_config('updateautocheck', 0);
set_config('registrationpending', 0);

// --- roles -------------------------------------------------------------------------------
// The mentor role first: on a fresh 4.5 site it gets id 9, as on the recorded site.
$mentorroleid = create_role('Mentor', 'mentor', 'Sees the progress of the mentees assigned to them.');
set_role_contextlevels($mentorroleid, [CONTEXT_USER]);
$usercontextcaps = [
    'moodle/user:viewdetails', 'moodle/user:readuserposts', 'moodle/user:readuserblogs',
    'moodle/user:viewuseractivitiesreport', 'moodle/user:editprofile',
];
$systemid = context_system::instance()->id;
foreach ($usercontextcaps as $cap) {
    assign_capability($cap, CAP_ALLOW, $mentorroleid, $systemid, true);
}

$integrationroleid = create_role('Mentorship sync', 'mentorsyncintegration',
    'The mentorsync integration user: web services, users, enrolments, groups, completion.');
set_role_contextlevels($integrationroleid, [CONTEXT_SYSTEM]);
$integrationcaps = [
    'webservice/rest:use',
    'moodle/user:create', 'moodle/user:update', 'moodle/user:viewdetails',
    'moodle/user:viewhiddendetails', 'moodle/user:viewalldetails', 'moodle/site:viewfullnames',
    'moodle/site:viewuseridentity', 'moodle/course:useremail', 'moodle/user:viewuseractivitiesreport',
    'moodle/course:view', 'moodle/course:update', 'moodle/course:viewhiddencourses', 'moodle/course:viewparticipants',
    'moodle/course:enrolreview', 'moodle/course:managegroups', 'moodle/site:accessallgroups',
    'moodle/course:overridecompletion', 'moodle/course:viewhiddenactivities',
    'moodle/course:ignoreavailabilityrestrictions',
    // core_course_get_course_module answers the activity's idnumber only with this (progress
    // finds the meeting activities by idnumber; core_course_get_contents leaves it out).
    'moodle/course:manageactivities',
    'moodle/role:assign', 'moodle/role:review', 'enrol/manual:enrol', 'enrol/manual:unenrol',
    'report/completion:view', 'report/progress:view', 'moodle/grade:viewall',
];
foreach ($integrationcaps as $cap) {
    assign_capability($cap, CAP_ALLOW, $integrationroleid, $systemid, true);
}
$assignable = [
    $DB->get_field('role', 'id', ['shortname' => 'editingteacher'], MUST_EXIST),
    $DB->get_field('role', 'id', ['shortname' => 'teacher'], MUST_EXIST),
    $DB->get_field('role', 'id', ['shortname' => 'student'], MUST_EXIST),
    $mentorroleid,
];
foreach ($assignable as $target) {
    core_role_set_assign_allowed($integrationroleid, $target);
}
// The plugin's bulk completion read (db/access.php), when the plugin is installed.
if (get_capability_info('local/mentorsync:readcompletions')) {
    assign_capability('local/mentorsync:readcompletions', CAP_ALLOW, $integrationroleid, $systemid, true);
}
// Participants call web services with their own tokens (completing meetings, viewing pages),
// as the mobile app would: the authenticated-user role may use REST.
$userroleid = $DB->get_field('role', 'id', ['shortname' => 'user'], MUST_EXIST);
assign_capability('webservice/rest:use', CAP_ALLOW, $userroleid, $systemid, true);

// --- the integration user ------------------------------------------------------------------
$userid = user_create_user((object)[
    'username' => 'mentorsync', 'auth' => 'manual', 'password' => 'Integration#2026',
    'firstname' => 'Mentorship', 'lastname' => 'Sync', 'email' => 'mentorsync@example.org',
    'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id,
], true, false);
role_assign($integrationroleid, $userid, $systemid);

// --- custom profile fields (text) ----------------------------------------------------------
$category = (object)['name' => 'Membership', 'sortorder' => 1];
$category->id = $DB->insert_record('user_info_category', $category);
$fields = [
    'crmid' => 'CRM ID (Salesforce Contact Id)',
    'memberstatus' => 'Membership status',
    'practicesetting' => 'Practice setting',
    'region' => 'Region',
];
$sort = 0;
foreach ($fields as $shortname => $name) {
    $DB->insert_record('user_info_field', (object)[
        'shortname' => $shortname, 'name' => $name, 'datatype' => 'text',
        'description' => '', 'descriptionformat' => FORMAT_HTML, 'categoryid' => $category->id,
        'sortorder' => ++$sort, 'required' => 0, 'locked' => 0, 'visible' => PROFILE_VISIBLE_ALL,
        'forceunique' => 0, 'signup' => 0, 'defaultdata' => '', 'defaultdataformat' => 0,
        'param1' => 30, 'param2' => 2048, 'param3' => 0, 'param4' => '', 'param5' => '',
    ]);
}

// --- the external service --------------------------------------------------------------------
$service = (object)[
    'name' => 'Mentorship sync', 'shortname' => 'mentorsync', 'enabled' => 1,
    'requiredcapability' => '', 'restrictedusers' => 1, 'component' => null,
    'timecreated' => time(), 'timemodified' => time(), 'downloadfiles' => 0, 'uploadfiles' => 0,
];
$service->id = $DB->insert_record('external_services', $service);
$added = [];
$absent = [];
foreach ($functions as $function) {
    if (!$DB->record_exists('external_functions', ['name' => $function])) {
        $absent[] = $function;  // e.g. the plugin's function when the plugin is not installed
        continue;
    }
    $DB->insert_record('external_services_functions',
        (object)['externalserviceid' => $service->id, 'functionname' => $function]);
    $added[] = $function;
}
$DB->insert_record('external_services_users', (object)[
    'externalserviceid' => $service->id, 'userid' => $userid, 'iprestriction' => null,
    'validuntil' => null, 'timecreated' => time(),
]);
$token = \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service, $userid,
    context_system::instance(), 0, '', 'mentorsync tests');

// The participants' service (not restricted to listed users): tokens come from token.php.
$participants = (object)[
    'name' => 'Mentorship participants', 'shortname' => 'mentorsyncparticipants', 'enabled' => 1,
    'requiredcapability' => '', 'restrictedusers' => 0, 'component' => null,
    'timecreated' => time(), 'timemodified' => time(), 'downloadfiles' => 0, 'uploadfiles' => 0,
];
$participants->id = $DB->insert_record('external_services', $participants);
foreach (['core_webservice_get_site_info', 'core_completion_update_activity_completion_status_manually',
        'mod_page_view_page', 'core_completion_get_activities_completion_status'] as $function) {
    $DB->insert_record('external_services_functions',
        (object)['externalserviceid' => $participants->id, 'functionname' => $function]);
}

// The plugin posts to a mentorsync on loopback at a port of the test's choosing: Moodle's cURL
// security blocks private hosts and ports other than 80/443 by default (plugin README).
set_config('curlsecurityblockedhosts', '');
set_config('curlsecurityallowedport', '');

// --- courses and activities --------------------------------------------------------------
$categoryid = core_course_category::create(['name' => 'Guided Mentorship Program'])->id;

function mst_course(string $shortname, string $fullname, int $categoryid, int $groupmode): stdClass {
    return create_course((object)[
        'fullname' => $fullname, 'shortname' => $shortname, 'idnumber' => $shortname,
        'category' => $categoryid, 'format' => 'topics', 'numsections' => 1,
        'enablecompletion' => 1, 'groupmode' => $groupmode, 'groupmodeforce' => 0,
        'summary' => '', 'summaryformat' => FORMAT_HTML, 'showcompletionconditions' => 1,
    ]);
}

function mst_page(stdClass $course, string $name, string $idnumber, array $completion): int {
    $info = (object)array_merge([
        'modulename' => 'page', 'course' => $course->id, 'section' => 1, 'visible' => 1,
        // add_moduleinfo() takes the activity's idnumber from cmidnumber (course/modlib.php).
        'name' => $name, 'idnumber' => $idnumber, 'cmidnumber' => $idnumber, 'content' => '<p>' . s($name) . '</p>',
        'contentformat' => FORMAT_HTML, 'display' => 5, 'printintro' => 0,
        'printlastmodified' => 1, 'introeditor' => ['text' => '', 'format' => FORMAT_HTML, 'itemid' => 0],
    ], $completion);
    return (int)create_module($info)->coursemodule;
}

function mst_completes_when_all(stdClass $course, array $cmids): void {
    global $DB;
    foreach ($cmids as $cmid) {
        $DB->insert_record('course_completion_criteria', (object)[
            'course' => $course->id, 'criteriatype' => COMPLETION_CRITERIA_TYPE_ACTIVITY,
            'module' => 'page', 'moduleinstance' => $cmid,
        ]);
    }
    foreach ([null, COMPLETION_CRITERIA_TYPE_ACTIVITY] as $type) {
        $DB->insert_record('course_completion_aggr_methd', (object)[
            'course' => $course->id, 'criteriatype' => $type, 'method' => COMPLETION_AGGREGATION_ALL,
        ]);
    }
}

$orient = mst_course('GMP-ORIENT', 'Guided Mentorship Program - Orientation', $categoryid, NOGROUPS);
$orientcm = mst_page($orient, 'Orientation training', 'GMP-ORIENT-TRAINING',
    ['completion' => COMPLETION_TRACKING_AUTOMATIC, 'completionview' => 1]);
mst_completes_when_all($orient, [$orientcm]);

$programme = mst_course('GMP-2026', 'Guided Mentorship Program 2026', $categoryid, SEPARATEGROUPS);
$months = ['October', 'November', 'December', 'January', 'February', 'March'];
$meetings = [];
foreach ($months as $i => $month) {
    $n = $i + 1;
    $meetings["GMP-2026-M$n"] = mst_page($programme, "Meeting $n ($month)", "GMP-2026-M$n",
        ['completion' => COMPLETION_TRACKING_MANUAL]);
}
mst_completes_when_all($programme, array_values($meetings));

// Caches were filled while configuring: the template must not carry stale ones.
purge_all_caches();

echo json_encode([
    'token' => $token,
    'userid' => (int)$userid,
    'serviceid' => (int)$service->id,
    'mentor_roleid' => (int)$mentorroleid,
    'integration_roleid' => (int)$integrationroleid,
    'courses' => ['GMP-ORIENT' => (int)$orient->id, 'GMP-2026' => (int)$programme->id],
    'orientation_cmid' => $orientcm,
    'orientation_pageid' => (int)$DB->get_field('course_modules', 'instance', ['id' => $orientcm]),
    'participant_serviceid' => (int)$participants->id,
    'meeting_cmids' => $meetings,
    'functions' => $added,
    'absent_functions' => $absent,
]), "\n";
