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
 * Web-service functions of local_mentorsync.
 *
 * The function must also be added to the external service that mentorsync's token uses
 * (Site administration > Server > Web services > External services > Functions).
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

$functions = [
    'local_mentorsync_get_completions' => [
        'classname' => 'local_mentorsync\external\get_completions',
        'description' => 'Activity and course completions of a course changed since a time, paged: ids, states and times only.',
        'type' => 'read',
        'capabilities' => 'local/mentorsync:readcompletions',
        'ajax' => false,
    ],
];
