; Per-user installer for the frozen torchdoctor app (packaging/windows/torchdoctor.spec).
;
;   makensis -DAPP_DIR=dist\torchdoctor -DVERSION=0.1.0 -DOUT_FILE=torchdoctor-0.1.0-setup.exe packaging\windows\installer.nsi
;
; No administrator rights: it installs under %LOCALAPPDATA%\Programs\torchdoctor and writes only
; HKCU. The "Start torchdoctor at login" choice writes exactly the Run value that
; `torchdoctor autostart enable` writes (RUN_KEY, RUN_VALUE and RUN_COMMAND below; the test
; tests/packaging/test_installer.py holds them equal to agent/autostart.py's), so the app's own
; status, enable and disable treat the installer's entry as theirs.
; The uninstaller stops the running tray, removes the Run value and the program, and keeps logs and
; settings (%LOCALAPPDATA%\torchdoctor) unless its "Remove logs and settings" box is ticked.
; There is no folder page: the uninstaller removes $INSTDIR whole, which is safe only for a folder
; that is ours alone.

Unicode true
RequestExecutionLevel user
SetCompressor /SOLID lzma

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!ifndef APP_DIR
  !error "pass -DAPP_DIR=<the frozen app folder>"
!endif
!ifndef OUT_FILE
  !define OUT_FILE "torchdoctor-${VERSION}-setup.exe"
!endif

!define APP_NAME "torchdoctor"
!define CLI_EXE "torchdoctor.exe"
!define WINDOWED_EXE "torchdoctorw.exe"
; Shared with agent/autostart.py (AUTOSTART_NAME, RUN_KEY, launch_argv + windows_command_line).
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define STARTUP_APPROVED_KEY "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
!define RUN_VALUE "torchdoctor"
!define RUN_COMMAND '"$INSTDIR\${WINDOWED_EXE}" tray'
; Where platformdirs puts config, state, cache and logs for appauthor=False (service/paths.py).
!define DATA_DIR "$LOCALAPPDATA\torchdoctor"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\torchdoctor"

Name "${APP_NAME} ${VERSION}"
OutFile "${OUT_FILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP_NAME}"
InstallDirRegKey HKCU "Software\${APP_NAME}" "InstallDir"
ShowInstDetails show

!include "MUI2.nsh"

!define MUI_ICON "${__FILEDIR__}\..\..\icons\torchdoctor.ico"
!define MUI_UNICON "${__FILEDIR__}\..\..\icons\torchdoctor.ico"
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_NODESC

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
; The last page starts the tray (windowed: no console), ticked by default.
!define MUI_FINISHPAGE_RUN "$INSTDIR\${WINDOWED_EXE}"
!define MUI_FINISHPAGE_RUN_PARAMETERS "tray"
!define MUI_FINISHPAGE_RUN_TEXT "Start torchdoctor now"
!insertmacro MUI_PAGE_FINISH

!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES

!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VERSION}.0"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductName" "${APP_NAME}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileDescription" "${APP_NAME} installer"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "LegalCopyright" "MIT License"

!macro StopTray
  ; The tray holds files of $INSTDIR open. taskkill without rights over other users' processes
  ; ends only this user's; the exit code is ignored, as there may be no tray running.
  nsExec::Exec '"$SYSDIR\taskkill.exe" /T /F /IM ${WINDOWED_EXE}'
  Pop $0
  Sleep 500
!macroend

Section "torchdoctor" SecApp
  SectionIn RO
  ; An upgrade over a running tray: its files are in use until it stops.
  !insertmacro StopTray
  SetOutPath "$INSTDIR"
  File /r "${APP_DIR}\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "Software\${APP_NAME}" "InstallDir" "$INSTDIR"
  CreateShortcut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\${WINDOWED_EXE}" "tray" "$INSTDIR\${WINDOWED_EXE}" 0
  ; Apps & features lists per-user programs from HKCU too.
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "torchdoctor developers"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${WINDOWED_EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
SectionEnd

Section "Start torchdoctor at login" SecAutostart
  WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" '${RUN_COMMAND}'
  ; As `autostart enable` does: an earlier "off" in Task Manager would keep the new entry from starting.
  DeleteRegValue HKCU "${STARTUP_APPROVED_KEY}" "${RUN_VALUE}"
SectionEnd

Section "un.torchdoctor" UnSecApp
  SectionIn RO
  !insertmacro StopTray
  DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  DeleteRegValue HKCU "${STARTUP_APPROVED_KEY}" "${RUN_VALUE}"
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  RMDir /r "$INSTDIR"
  DeleteRegKey HKCU "Software\${APP_NAME}"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd

; Unticked by default: a reinstall keeps the user's settings, history and logs.
Section /o "un.Remove logs and settings" UnSecData
  RMDir /r "${DATA_DIR}"
SectionEnd
