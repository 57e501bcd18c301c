<?php
// Prints a web-service token of the participants' service (configure.php) for one user, so a
// test can call Moodle as that participant would. Usage: php token.php --userid=N
//
// The project's test fixture: run against the throw-away site only.

define('CLI_SCRIPT', true);

$moodleroot = getenv('MENTORSYNC_TEST_MOODLE_ROOT');
if (!$moodleroot) {
    fwrite(STDERR, "MENTORSYNC_TEST_MOODLE_ROOT is not set\n");
    exit(2);
}
require($moodleroot . '/config.php');
require_once($CFG->libdir . '/clilib.php');

[$options, $unrecognised] = cli_get_params(['userid' => 0], []);
$userid = (int)$options['userid'];
global $DB;
$DB->get_record('user', ['id' => $userid, 'deleted' => 0], 'id', MUST_EXIST);
\core\session\manager::set_user(get_admin());
$service = $DB->get_record('external_services', ['shortname' => 'mentorsyncparticipants'], '*', MUST_EXIST);
echo \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service, $userid,
    context_system::instance(), 0, '', 'participant'), "\n";
