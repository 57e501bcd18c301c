<?php
// This file is part of the mentorsync Moodle plugin local_mentorsync.
//
// Moodle is free software: you can redistribute it and/or modify
// it under the terms of the GNU General Public License as published by
// the Free Software Foundation, either version 3 of the License, or
// (at your option) any later version.
//
// Moodle is distributed in the hope that it will be useful,
// but WITHOUT ANY WARRANTY; without even the implied warranty of
// MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
// GNU General Public License for more details.
//
// You should have received a copy of the GNU General Public License
// along with Moodle.  If not, see <http://www.gnu.org/licenses/>.

/**
 * English strings of local_mentorsync.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$string['courses'] = 'Courses to report';
$string['courses_desc'] = 'Ids or short names of the courses whose activity and course completions are sent to mentorsync, one per line or separated by commas. Completions in other courses are not sent. User updates and deletions are always sent.';
$string['deliveryfailed'] = 'Event {$a->msgid} was not delivered to mentorsync ({$a->reason}); it will be retried.';
$string['endpoint'] = 'mentorsync webhook URL';
$string['endpoint_desc'] = 'The full URL of mentorsync\'s Moodle event endpoint, for example https://mentorsync.example.org/hooks/moodle/events. Leave empty to send nothing. A URL on a private network or a port other than 80 and 443 must be allowed in Site administration > General > Security > HTTP security (cURL blocked hosts list, cURL allowed ports list).';
$string['mentorsync:readcompletions'] = 'Read the completion states and times of everyone in a course (for mentorsync)';
$string['pluginname'] = 'mentorsync';
$string['privacy:metadata:mentorsync'] = 'When a participant\'s completion or account changes, the plugin tells the association\'s mentorsync service which user, course and activity it concerns and when, so that their progress is recorded in the association\'s CRM. No names, email addresses, grades or text are sent.';
$string['privacy:metadata:mentorsync:contextinstanceid'] = 'The id of the activity (course module) or user the event is about.';
$string['privacy:metadata:mentorsync:courseid'] = 'The id of the course.';
$string['privacy:metadata:mentorsync:eventname'] = 'Which kind of change happened (activity completion, course completion, user updated, user deleted).';
$string['privacy:metadata:mentorsync:relateduserid'] = 'The id of the user whose completion or account changed.';
$string['privacy:metadata:mentorsync:timecreated'] = 'When the change happened.';
$string['privacy:metadata:mentorsync:userid'] = 'The id of the user who made the change.';
$string['secret'] = 'Signing secret';
$string['secret_desc'] = 'The Standard Webhooks secret shared with mentorsync (its service.moodle_events_secret), starting with whsec_. Every event is signed with it.';
$string['taskdeliverevent'] = 'Deliver an event to mentorsync';
$string['timeout'] = 'Timeout (seconds)';
$string['timeout_desc'] = 'How long cron waits for mentorsync to answer one event. An event that is not answered in time is retried later.';
