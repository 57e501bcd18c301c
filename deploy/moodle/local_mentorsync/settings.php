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
 * Admin settings of local_mentorsync.
 *
 * @package    local_mentorsync
 * @copyright  2026 mentorsync
 * @license    http://www.gnu.org/copyleft/gpl.html GNU GPL v3 or later
 */

defined('MOODLE_INTERNAL') || die();

if ($hassiteconfig) {
    $settings = new admin_settingpage('local_mentorsync', new lang_string('pluginname', 'local_mentorsync'));
    $ADMIN->add('localplugins', $settings);

    if ($ADMIN->fulltree) {
        $settings->add(new admin_setting_configtext('local_mentorsync/endpoint',
            new lang_string('endpoint', 'local_mentorsync'),
            new lang_string('endpoint_desc', 'local_mentorsync'), '', PARAM_URL, 60));
        $settings->add(new admin_setting_configpasswordunmask('local_mentorsync/secret',
            new lang_string('secret', 'local_mentorsync'),
            new lang_string('secret_desc', 'local_mentorsync'), ''));
        $settings->add(new admin_setting_configtextarea('local_mentorsync/courses',
            new lang_string('courses', 'local_mentorsync'),
            new lang_string('courses_desc', 'local_mentorsync'), '', PARAM_TEXT, 40, 4));
        $settings->add(new admin_setting_configtext('local_mentorsync/timeout',
            new lang_string('timeout', 'local_mentorsync'),
            new lang_string('timeout_desc', 'local_mentorsync'), 10, PARAM_INT, 4));
    }
}
